"""Batched multi-persona steering training versus training the same personas one after another.

Both paths train the same 8 demo personas with the same settings, so every persona sees
the same batches (same total tokens). The script checks the vectors agree and prints
the wall time of each path and the ratio.

    python benchmarks/batched_training.py [--workspace .demo] [--steps 40] [--max-length 64]
"""

import argparse
import tempfile
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=".demo", help="demo workspace (built if missing)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8, help="examples per persona per step")
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steering_assets.demo.build import build_demo_workspace
    from steering_assets.personas.budget import BudgetConfig, SelectionConfig, build_training_split
    from steering_assets.personas.dataset import build_persona_dataset
    from steering_assets.personas.layout import ROLES, discover_personas
    from steering_assets.steering.config import SteeringTrainingConfig
    from steering_assets.steering.training import PersonaData, train_steering_vectors

    workspace, _ = build_demo_workspace(args.workspace)
    tokenizer = AutoTokenizer.from_pretrained(workspace.model_path, local_files_only=True)
    personas = []
    for ref in discover_personas(workspace.data_root, ROLES).personas[:8]:
        frame, _ = build_persona_dataset(ref, workspace.data_root)
        split = build_training_split(frame, tokenizer, SelectionConfig.defaults_for(ROLES), BudgetConfig())
        personas.append(PersonaData(ref.partition_key, split.train["messages"].to_list(), split.validation["messages"].to_list()[:16]))
    config = SteeringTrainingConfig(
        max_steps=args.steps, eval_steps=args.steps // 2, save_steps=args.steps // 2,
        per_device_batch_size=args.batch_size, max_length=args.max_length, early_stopping_patience=0,
    )

    def model():
        return AutoModelForCausalLM.from_pretrained(workspace.model_path, local_files_only=True).eval()

    base = model()
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        alone = [
            train_steering_vectors(base, tokenizer, [p], config, f"{scratch}/alone-{i}", model_name="demo", resume=False).vectors[0]
            for i, p in enumerate(personas)
        ]
        sequential_s = time.perf_counter() - started
        started = time.perf_counter()
        together = train_steering_vectors(base, tokenizer, personas, config, f"{scratch}/together", model_name="demo", resume=False).vectors
        batched_s = time.perf_counter() - started
    worst = max(float((a.vector - b.vector).abs().max()) for a, b in zip(alone, together))
    assert worst < 1e-4, f"batched and sequential vectors differ by {worst}"

    tokens = len(personas) * args.steps * args.batch_size
    print(f"{len(personas)} personas x {args.steps} steps x {args.batch_size} examples (max {args.max_length} tokens), "
          f"torch threads {torch.get_num_threads()}; largest vector difference {worst:.1e}")
    print(f"sequential (one persona per run): {sequential_s:7.1f}s  ({tokens / sequential_s:6.1f} examples/s)")
    print(f"batched (8 personas per pass):    {batched_s:7.1f}s  ({tokens / batched_s:6.1f} examples/s)")
    print(f"speed-up: {sequential_s / batched_s:.1f}x (target >= 3x)")


if __name__ == "__main__":
    main()
