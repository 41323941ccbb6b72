"""Share of the training tokens that carry the loss, with each real chat template, before and after the
assistant mask: before, training without {% generation %} tags fell back to a loss on every token.

Builds the demo rollouts, a byte-level BPE tokenizer on the demo text (as the demo model's) with each
family's special tokens and real chat template (../shared/fixtures/real_world/chat_templates/), and
masks the first rows of a persona's conversations exactly as training does (truncated to max_length).

    python benchmarks/loss_token_share.py [--persona pirate] [--rows 64] [--max-length 1024]
"""

import argparse
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--persona", default="pirate")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from steering_assets.demo.corpus import iter_demo_texts, write_demo_rollouts
    from steering_assets.personas.dataset import build_persona_dataset
    from steering_assets.personas.layout import ROLES, PersonaRef
    from steering_assets.steering.assistant_mask import mask_method, rendered_reply_mask
    from tests.chat_tokenizers import FAMILIES, build_tokenizer, templates_present

    if not templates_present():
        raise SystemExit("../shared/fixtures/real_world/chat_templates is not present")
    with tempfile.TemporaryDirectory() as root:
        write_demo_rollouts(Path(root), seed=0)
        frame, _ = build_persona_dataset(PersonaRef(ROLES, "demo-qwen3-tiny", args.persona), Path(root))
        conversations = frame["messages"].to_list()[: args.rows]
        corpus = list(iter_demo_texts(Path(root)))
    print(f"{len(conversations)} {args.persona} rows, max_length {args.max_length}")
    print(f"{'template':<40} {'method':<15} {'loss tokens / all tokens':>25} {'non-reply share of the loss (before -> after)':>46} "
          f"{'rows without reply tokens':>26}")
    for family, spec in FAMILIES.items():
        tokenizer = build_tokenizer(family, corpus=corpus, vocab_size=4096)
        masks = [rendered_reply_mask(tokenizer, c, i) for i, c in enumerate(conversations)]
        total = sum(min(len(m.input_ids), args.max_length) for m in masks)
        reply = sum(sum(m.assistant_mask[: args.max_length]) for m in masks)
        share = reply / total
        empty = sum(1 for m in masks if not any(m.assistant_mask[: args.max_length]))
        print(f"{spec['template']:<40} {mask_method(tokenizer):<15} {share:>25.1%} {1 - share:>38.1%} -> 0.0% {empty:>26}")


if __name__ == "__main__":
    main()
