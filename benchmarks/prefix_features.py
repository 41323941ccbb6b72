"""Per-prefix hidden states: one batched causal pass per sentence batch versus one forward per prefix.

Runs SmolLM2-135M-Instruct (converted from its GGUF package) over its own sentences from a `make demo`
run (the concept sentences, i.e. the first sentence of each trait reply, then the first sentence of each
role reply; the workspace's run, else the run recorded in tests/fixtures/smollm2_demo) both ways,
checks the states agree within 1e-4 of each state's largest entry (SmolLM2's first-token states hold
an entry near 24000, where float32 itself steps by 0.002), and prints prefixes per second for each and the ratio.

    python benchmarks/prefix_features.py [--workspace .demo] [--sentences 120] [--batch-size 16]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=".demo", help="a make demo workspace (else the recorded run)")
    parser.add_argument("--sentences", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks._recorded import describe, recorded_root, sentences, smollm2_folder
    from steering_assets.features.prefixes import prefix_hidden_states, tokenize_sentences
    from tests.reference import prefix_hidden_states_one_by_one

    root = recorded_root(args.workspace)
    folder = smollm2_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    ids = tokenize_sentences(tokenizer, sentences(root)[: args.sentences])
    prefixes = sum(x.n_fragments for x in ids)

    started = time.perf_counter()
    naive = prefix_hidden_states_one_by_one(model, ids)
    naive_s = time.perf_counter() - started
    started = time.perf_counter()
    batched = prefix_hidden_states(model, ids, batch_size=args.batch_size)
    batched_s = time.perf_counter() - started
    # Each state vector's difference relative to its own largest entry.
    worst = max(float((np.abs(a - b) / np.abs(b).max(axis=-1, keepdims=True)).max()) for a, b in zip(batched, naive))
    assert worst < 1e-4, f"one-pass and per-prefix states differ by {worst} of their largest entry"

    print(f"SmolLM2-135M-Instruct, {len(ids)} of its sentences ({describe(root)}), {prefixes} prefixes, all {model.config.num_hidden_layers} layers; "
          f"largest difference {worst:.1e} of the state's largest entry")
    print(f"one forward per prefix:        {prefixes / naive_s:8.0f} prefixes/s ({naive_s:.2f}s)")
    print(f"one batched pass per sentence: {prefixes / batched_s:8.0f} prefixes/s ({batched_s:.2f}s)")
    print(f"speed-up: {naive_s / batched_s:.1f}x (target >= 8x)")


if __name__ == "__main__":
    main()
