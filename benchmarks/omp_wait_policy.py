"""How torch's OpenMP wait policy changes the demo model's training speed, alone and beside a busy process.

`make demo` sets OMP_WAIT_POLICY=PASSIVE (steering_assets/cli.py). This script measures why:
it trains the tiny demo model (the demo's own pretraining code, TRL SFT) for a few steps with
torch's default thread count, in a fresh process per run, under the default wait policy (spin a while, then sleep) and PASSIVE: once with
the machine to itself, and once beside one busy process (a pure-Python loop holding one core,
as another job or a test run on a two-core machine does). It prints seconds per step and the
ratios default / PASSIVE. Spinning can only win alone; beside a busy process a spinning thread
burns the time slice its partner needs.

    .venv/bin/python benchmarks/omp_wait_policy.py [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TRAIN = """
import json, sys, time, torch
from pathlib import Path
from transformers import TrainerCallback
from steering_assets.demo.pretrain import pretrain_demo_model

class Clock(TrainerCallback):  # the steps after the first few: no start-up in the number
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 5:
            self.started = time.perf_counter()

clock = Clock()
pretrain_demo_model(Path(sys.argv[1]), Path(sys.argv[2]), steps=int(sys.argv[3]), callbacks=[clock])
print(json.dumps({"threads": torch.get_num_threads(), "seconds_per_step": (time.perf_counter() - clock.started) / (int(sys.argv[3]) - 5)}))
"""


def build_model(root: Path) -> tuple[Path, Path]:
    from steering_assets.demo.corpus import iter_demo_texts, write_demo_rollouts
    from steering_assets.demo.model import save_tiny_model

    write_demo_rollouts(root / "data", seed=0)
    save_tiny_model(list(iter_demo_texts(root / "data"))[::5], root / "model", seed=0)
    return root / "model", root / "data"


def train(model: Path, data: Path, steps: int, policy: str, work: Path) -> dict:
    import shutil

    copy = work / f"model-{policy}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(model, copy)
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env.update({"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"})
    if policy != "default":  # unset: libgomp spins a while (GOMP_SPINCOUNT), then sleeps
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", TRAIN, str(copy), str(data), str(steps)], env=env, cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, data = build_model(work)
        results = {}
        for condition in ("alone", "beside a busy process"):
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if condition != "alone" else None
            try:
                for policy in ("default", "PASSIVE"):
                    results[condition, policy] = train(model, data, args.steps, policy, work)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    print(f"demo model training, {os.cpu_count()} CPUs, torch threads {results['alone', 'default']['threads']}, "
          f"seconds per step over {args.steps - 5} steps")
    print(f"{'condition':<24}{'default (spin)':>16}{'PASSIVE':>10}{'default / PASSIVE':>19}")
    for condition in ("alone", "beside a busy process"):
        spin = results[condition, "default"]["seconds_per_step"]
        passive = results[condition, "PASSIVE"]["seconds_per_step"]
        print(f"{condition:<24}{spin:>16.3f}{passive:>10.3f}{spin / passive:>19.2f}")


if __name__ == "__main__":
    main()
