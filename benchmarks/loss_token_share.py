"""Share of the training tokens that carry the loss, with each real chat template, before and after the
assistant mask: before, training without {% generation %} tags fell back to a loss on every token.

Reads a persona's rows from what SmolLM2-135M-Instruct said in a `make demo` run (the workspace's, else
the run recorded in tests/fixtures/smollm2_demo) and masks them exactly as training does (truncated to
max_length), with SmolLM2's own tokenizer and chat template, and with each family's real chat template
and special tokens (../shared/fixtures/real_world/chat_templates/) on a byte-level BPE tokenizer trained
on SmolLM2's replies (tests/chat_tokenizers.py: the real tokenizers of those families are not offline).

    python benchmarks/loss_token_share.py [--workspace .demo] [--persona pirate] [--rows 64] [--max-length 1024]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=".demo", help="a make demo workspace (else the recorded run)")
    parser.add_argument("--persona", default="pirate")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from benchmarks._recorded import SOURCE_MODEL, describe, recorded_root, smollm2_folder
    from demo.features import assistant_replies
    from steering_assets.formats.rollouts import ROLES, PersonaRef
    from steering_assets.models.assistant_mask import mask_method, rendered_reply_mask
    from steering_assets.personas.dataset import build_persona_dataset
    from tests.chat_tokenizers import FAMILIES, build_tokenizer, templates_present

    root = recorded_root(args.workspace)
    frame, _ = build_persona_dataset(PersonaRef(ROLES, SOURCE_MODEL, args.persona), root / "data")
    conversations = frame["messages"].to_list()[: args.rows]
    corpus = assistant_replies(root / "data")
    tokenizers = {"SmolLM2-135M-Instruct (its own tokenizer)": AutoTokenizer.from_pretrained(smollm2_folder())}
    if templates_present():
        for family, spec in FAMILIES.items():
            tokenizers[spec["template"]] = build_tokenizer(family, corpus=corpus, vocab_size=4096)
    else:
        print("../shared/fixtures/real_world/chat_templates is not present: SmolLM2's template only")
    print(f"{len(conversations)} {args.persona} rows ({describe(root)}), max_length {args.max_length}")
    print(f"{'template':<42} {'method':<15} {'loss tokens / all tokens':>25} {'non-reply share of the loss (before -> after)':>46} "
          f"{'rows without reply tokens':>26}")
    for name, tokenizer in tokenizers.items():
        masks = [rendered_reply_mask(tokenizer, c, i) for i, c in enumerate(conversations)]
        total = sum(min(len(m.input_ids), args.max_length) for m in masks)
        reply = sum(sum(m.assistant_mask[: args.max_length]) for m in masks)
        share = reply / total
        empty = sum(1 for m in masks if not any(m.assistant_mask[: args.max_length]))
        print(f"{name:<42} {mask_method(tokenizer):<15} {share:>25.1%} {1 - share:>38.1%} -> 0.0% {empty:>26}")


if __name__ == "__main__":
    main()
