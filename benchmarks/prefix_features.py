"""Per-prefix hidden states: one batched causal pass per sentence batch versus one forward per prefix.

Runs the demo model over demo sentences both ways, checks the states agree within 1e-4,
and prints prefixes per second for each and the ratio.

    python benchmarks/prefix_features.py [--workspace .demo] [--sentences 120] [--batch-size 16]
"""

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=".demo", help="demo workspace (built if missing)")
    parser.add_argument("--sentences", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steering_assets.demo.build import build_demo_workspace
    from steering_assets.demo.corpus import ROLE_VOICES, TOPICS
    from steering_assets.features.prefixes import prefix_hidden_states, prefix_hidden_states_one_by_one, tokenize_sentences

    workspace, _ = build_demo_workspace(args.workspace)
    tokenizer = AutoTokenizer.from_pretrained(workspace.model_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(workspace.model_path, local_files_only=True).eval()
    sentences = [s.format(topic=topic) for voice in ROLE_VOICES.values() for s in voice.sentences for topic in TOPICS[:2]]
    ids = tokenize_sentences(tokenizer, sentences[: args.sentences])
    prefixes = sum(x.n_fragments for x in ids)

    started = time.perf_counter()
    naive = prefix_hidden_states_one_by_one(model, ids)
    naive_s = time.perf_counter() - started
    started = time.perf_counter()
    batched = prefix_hidden_states(model, ids, batch_size=args.batch_size)
    batched_s = time.perf_counter() - started
    worst = max(float(np.abs(a - b).max()) for a, b in zip(batched, naive))
    assert worst < 1e-4, f"one-pass and per-prefix states differ by {worst}"

    print(f"{len(ids)} demo sentences, {prefixes} prefixes, all {model.config.num_hidden_layers} layers; largest difference {worst:.1e}")
    print(f"one forward per prefix:        {prefixes / naive_s:8.0f} prefixes/s ({naive_s:.2f}s)")
    print(f"one batched pass per sentence: {prefixes / batched_s:8.0f} prefixes/s ({batched_s:.2f}s)")
    print(f"speed-up: {naive_s / batched_s:.1f}x (target >= 8x)")


if __name__ == "__main__":
    main()
