"""Judge throughput: the concurrent client versus one call at a time, against a local server with latency.

Starts the repository's fake OpenAI-compatible server with 50 ms per request, scores 200
items with bounded concurrency and then one at a time, checks the scores agree, prints
both rates and the ratio, and then the number of calls a second (cached) run makes.

    python benchmarks/judge_throughput.py [--items 200] [--latency 0.05] [--concurrency 32]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    import subprocess

    from steering_assets.judge.judgments import JudgmentCache
    from steering_assets.judge.openai_judge import OpenAIJudge

    prompts = [f"item {i} score:{i % 101}" for i in range(args.items)]
    # The server runs in its own process, as a real judge endpoint would.
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.vetting.fake_openai", "--latency", str(args.latency)],
        cwd=Path(__file__).resolve().parents[1], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    base_url = server.stdout.readline().strip()
    with tempfile.TemporaryDirectory() as scratch:
        def judge(concurrency, cache=None):
            return OpenAIJudge("fake-judge", api_key="local", base_url=base_url, concurrency=concurrency, cache=cache)

        started = time.perf_counter()
        sequential = judge(1).score(prompts)
        sequential_s = time.perf_counter() - started
        cache = JudgmentCache(Path(scratch) / "judgments.jsonl")
        started = time.perf_counter()
        concurrent = judge(args.concurrency, cache).score(prompts)
        concurrent_s = time.perf_counter() - started
        assert [j.score for j in sequential] == [j.score for j in concurrent]
        rerun = judge(args.concurrency, JudgmentCache(Path(scratch) / "judgments.jsonl"))
        rerun.score(prompts)
    server.stdin.close()
    server.wait(timeout=10)

    print(f"{args.items} items, {args.latency * 1000:.0f} ms simulated latency per call")
    print(f"one at a time:              {args.items / sequential_s:7.1f} items/s ({sequential_s:.2f}s)")
    print(f"concurrent ({args.concurrency:>2} in flight):   {args.items / concurrent_s:7.1f} items/s ({concurrent_s:.2f}s)")
    print(f"speed-up: {sequential_s / concurrent_s:.1f}x (target >= 10x)")
    print(f"judge calls on a second run with nothing changed: {rerun.calls} (target 0)")


if __name__ == "__main__":
    main()
