"""One judged evaluation's generations: all settings in shared batches versus one generate call per setting.

The judged evaluation answers every held-out instruction under every setting: the trained
and the activation vector at each factor, the persona's system prompt, and no steering. The
plain way, as research scripts sweep a steering coefficient, attaches one vector and calls
``generate`` once per (method, coefficient) over the instructions. The platform's way puts
every setting in the same batches, each row with its own steering vector. Decoding is greedy,
so both must write the same text; the script checks that, then prints both wall times and
the ratio. Each way is timed with one torch thread and with all of them, and keeps its best:
on a small CPU model the per-setting calls can be overhead-bound and run fastest on one thread
(the tiny model the old demo pretrained did; SmolLM2's ran fastest on two), so timing both on
the same thread count could handicap the plain way.

The model is SmolLM2-135M-Instruct (converted from its GGUF package), steered at block 15 (its
middle block, where the demo trains), the instructions are the demo's extraction questions and the
prompted setting uses the persona's first demo instruction. Two fixed random directions stand in for
the two vectors (the cost does not depend on what they are), scaled as the asset scales them: to
factor x the block's typical residual norm, measured on the default assistant's replies of a `make
demo` run (the workspace's, else the run recorded in tests/fixtures/smollm2_demo).

    python benchmarks/steering_eval.py [--workspace .demo] [--persona pirate] [--instructions 8] [--tokens 32] [--batch-size 80] [--repeats 2]
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=".demo", help="a make demo workspace (else the recorded run)")
    parser.add_argument("--persona", default="pirate")
    parser.add_argument("--instructions", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32, help="max new tokens per reply")
    parser.add_argument("--factors", default="0.125,0.25,0.5,1", help="in typical residual norms (the asset's defaults)")
    parser.add_argument("--batch-size", type=int, default=80, help="replies per batched call (80: the whole sweep in one)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each way at each thread count (the best is kept)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks._recorded import SOURCE_MODEL, describe, recorded_root, smollm2_folder
    from demo.instructions import DEMO_ROLES, QUESTIONS
    from steering_assets.formats.rollouts import ROLES, PersonaRef
    from steering_assets.personas.dataset import build_persona_dataset
    from steering_assets.steering.judged_eval import (
        ACTIVATION,
        PROMPTED,
        TRAINED,
        UNSTEERED,
        Setting,
        chat_prompt,
        generate_batched,
        scaled_direction,
        typical_residual_norm,
    )
    from tests.reference import generate_per_setting

    all_threads = max(1, torch.get_num_threads())
    folder = smollm2_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    hidden, layer = model.config.hidden_size, model.config.num_hidden_layers // 2
    root = recorded_root(args.workspace)
    baseline = build_persona_dataset(PersonaRef(ROLES, SOURCE_MODEL, "default"), root / "data")[0]
    norm = typical_residual_norm(model, tokenizer, baseline["messages"].to_list(), layer)
    # Two fixed directions stand in for the two vectors: the cost does not depend on what they are.
    rng = np.random.default_rng(0)
    directions = {TRAINED: rng.normal(size=hidden).astype(np.float32), ACTIVATION: rng.normal(size=hidden).astype(np.float32)}
    factors = [float(f) for f in args.factors.split(",")]
    settings = [Setting(m, f) for m in (TRAINED, ACTIVATION) for f in factors] + [Setting(UNSTEERED), Setting(PROMPTED)]
    vectors = {s: torch.from_numpy(scaled_direction(directions[s.method], s.factor, norm)) if s.factor else torch.zeros(hidden)
               for s in settings}
    system_prompt = DEMO_ROLES[args.persona][0]
    questions = QUESTIONS[: args.instructions]
    prompts = {s: [chat_prompt(tokenizer, q, system_prompt if s.method == PROMPTED else None) for q in questions] for s in settings}

    def per_setting():
        return generate_per_setting(model, tokenizer, prompts, layer, vectors, args.tokens)

    def batched():
        flat = [p for s in settings for p in prompts[s]]
        rows = [i for i, s in enumerate(settings) for _ in questions]
        return generate_batched(model, tokenizer, flat, rows, layer, torch.stack([vectors[s] for s in settings]),
                                args.tokens, args.batch_size)

    def timed(run):
        """Best wall time over the repeats at each thread count: (seconds, threads, result)."""
        best, result = (float("inf"), 0), None
        for threads in sorted({1, all_threads}):
            torch.set_num_threads(threads)
            for _ in range(args.repeats):
                started = time.perf_counter()
                result = run()
                best = min(best, (time.perf_counter() - started, threads))
        torch.set_num_threads(all_threads)
        return best[0], best[1], result

    plain_s, plain_threads, reference = timed(per_setting)
    batched_s, batched_threads, texts = timed(batched)
    expected = [text for s in settings for text in reference[s]]
    same = sum(a == b for a, b in zip(texts, expected))
    print(f"SmolLM2-135M-Instruct, block {layer} (typical residual norm {norm:.1f}, from {describe(root)}): "
          f"{len(settings)} settings x {len(questions)} instructions = {len(expected)} greedy replies of up to {args.tokens} tokens")
    print(f"one generate call per setting ({len(settings)} calls): {plain_s:.2f}s (best on {plain_threads} thread(s))")
    print(f"all settings in shared batches ({-(-len(expected) // args.batch_size)} calls): {batched_s:.2f}s "
          f"(best on {batched_threads} thread(s))")
    print(f"identical replies: {same}/{len(expected)}")
    print(f"ratio: {plain_s / batched_s:.1f}x")
    if same != len(expected):
        raise SystemExit("the batched replies differ from the per-setting ones")


if __name__ == "__main__":
    main()
