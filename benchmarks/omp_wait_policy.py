"""How torch's OpenMP wait policy changes steering training speed on SmolLM2, alone and beside a busy process.

`make demo` sets OMP_WAIT_POLICY=PASSIVE (demo/driver.py). This script measures why:
it trains a steering vector on SmolLM2-135M-Instruct (converted from its GGUF package) the way the
demo's steering stage does (``train_steering_vectors`` with the demo's settings: block 15, batches of
4, 96-token examples, learning rate 0.05) on the pirate's rows of a `make demo` run (the workspace's,
else the run recorded in tests/fixtures/smollm2_demo), for a few steps with torch's default thread
count, in a fresh process per run, under the default wait policy (spin a while, then sleep) and
PASSIVE: once with the machine to itself, and once beside one busy process (a pure-Python loop
holding one core, as another job or a test run on a two-core machine does). It prints seconds per
step and the ratios default / PASSIVE. Spinning can only win alone; beside a busy process a
spinning thread burns the time slice its partner needs.

    .venv/bin/python benchmarks/omp_wait_policy.py [--workspace .demo] [--steps 12] [--warmup 2]
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
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from benchmarks._recorded import SOURCE_MODEL
from demo.settings import DEMO_STEERING_TRAINING
from steering_assets.personas.dataset import build_persona_dataset
from steering_assets.formats.rollouts import ROLES, PersonaRef
from steering_assets.steering.config import SteeringTrainingConfig
from steering_assets.steering.training import PersonaData, train_steering_vectors

folder, data_root, out, steps, warmup = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

class Clock(TrainerCallback):  # the steps after the first few: no start-up in the number
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == warmup:
            self.started = time.perf_counter()

model = AutoModelForCausalLM.from_pretrained(folder).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
rows = build_persona_dataset(PersonaRef(ROLES, SOURCE_MODEL, "pirate"), data_root)[0]["messages"].to_list()
config = SteeringTrainingConfig(**{**DEMO_STEERING_TRAINING, "layer": 15, "max_steps": steps, "eval_steps": steps,
                                   "save_steps": steps, "early_stopping_patience": 0})
clock = Clock()
train_steering_vectors(model, tokenizer, [PersonaData("pirate", rows)], config, out, model_name="smollm2", resume=False,
                       callbacks=[clock])
print(json.dumps({"threads": torch.get_num_threads(), "seconds_per_step": (time.perf_counter() - clock.started) / (steps - warmup)}))
"""


def train(folder: Path, data: Path, steps: int, warmup: int, policy: str, work: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env.update({"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"})
    if policy != "default":  # unset: libgomp spins a while (GOMP_SPINCOUNT), then sleeps
        env["OMP_WAIT_POLICY"] = policy
    out = work / f"run-{policy}-{len(list(work.iterdir()))}"
    proc = subprocess.run([sys.executable, "-c", TRAIN, str(folder), str(data), str(out), str(steps), str(warmup)], env=env,
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"training under {policy} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=".demo", help="a make demo workspace (else the recorded run)")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    args = parser.parse_args()
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")

    from benchmarks._recorded import describe, recorded_root, smollm2_folder

    folder = smollm2_folder()
    root = recorded_root(args.workspace)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {}
        for condition in ("alone", "beside a busy process"):
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if condition != "alone" else None
            try:
                for policy in ("default", "PASSIVE"):
                    results[condition, policy] = train(folder, root / "data", args.steps, args.warmup, policy, work)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    print(f"SmolLM2-135M-Instruct steering training (pirate rows of {describe(root)}, demo settings), {os.cpu_count()} CPUs, "
          f"torch threads {results['alone', 'default']['threads']}, seconds per step over steps {args.warmup + 1}-{args.steps}")
    print(f"{'condition':<24}{'default (spin)':>16}{'PASSIVE':>10}{'default / PASSIVE':>19}")
    for condition in ("alone", "beside a busy process"):
        spin = results[condition, "default"]["seconds_per_step"]
        passive = results[condition, "PASSIVE"]["seconds_per_step"]
        print(f"{condition:<24}{spin:>16.3f}{passive:>10.3f}{spin / passive:>19.2f}")


if __name__ == "__main__":
    main()
