"""A 275-role persona-dataset backfill: one run per persona against chunked runs, side by side.

Builds a rollout tree with the 275 role names of ../shared/fixtures/persona_names/role_list.json,
each role answering with 12 of SmolLM2-135M-Instruct's own role replies from a `make demo` run (the
recorded run in tests/fixtures/smollm2_demo, taken in turn; 48-token replies, so the runs' own
overhead is what shows), with SmolLM2 as the persona model (its tokenizer counts the split), then backfills
roles/persona_dataset + roles/persona_training_split twice through Dagster's backfill machinery
on fresh sqlite instances, with a real dagster-daemon launching every run in its own process:
once with one persona per run (PERSONA_DATASETS_PER_RUN=1, what a backfill did before) and
once chunked (the default, 25 personas per run). Prints wall time, runs launched and the ratio.

    .venv/bin/python benchmarks/backfill.py [--roles 275] [--baseline-sample N] [--in-process]

--baseline-sample N times the one-run-per-persona backfill on N and on 2N personas only and
extends that line (fixed start-up cost plus a cost per run) to all of them, since the full
baseline takes some 15 minutes on 2 cores (941 s estimated from --baseline-sample 10,
measured on a shared machine); the output says so when it does.
--in-process drives both backfills in this process instead (what `make demo` does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._recorded import MODEL, RECORDED, SOURCE_MODEL  # noqa: E402

ROLE_LIST = REPO.parent / "shared" / "fixtures" / "persona_names" / "role_list.json"
QUESTIONS = 12


def role_names(count: int) -> list[str]:
    if not ROLE_LIST.is_file():
        sys.exit(f"{ROLE_LIST} is missing: the benchmark needs the shared role list")
    names = list(json.loads(ROLE_LIST.read_text()))  # {role name: description}
    return names[:count]


def recorded_answers() -> list[tuple[str, str]]:
    """(question, reply) of every recorded role reply of SmolLM2 (the default assistant's left out)."""
    answers = []
    for path in sorted((RECORDED / "data" / SOURCE_MODEL / "responses").glob("*.jsonl")):
        if path.stem != "default":
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    answers.append((row["question"], row["conversation"][-1]["content"]))
    return answers


def write_tree(data_root: Path, names: list[str]) -> None:
    """One responses file and one score file per role, in the assistant-axis layout SmolLM2's demo run has."""
    responses = data_root / SOURCE_MODEL / "responses"
    scores = data_root / SOURCE_MODEL / "scores"
    responses.mkdir(parents=True)
    scores.mkdir(parents=True)
    answers = recorded_answers()
    for r, name in enumerate(names):
        rows, score = [], {}
        for q in range(QUESTIONS):
            question, reply = answers[(r * QUESTIONS + q) % len(answers)]
            system = f"You are a {name.replace('_', ' ')}."
            rows.append(json.dumps({
                "system_prompt": system, "label": "pos", "prompt_index": 0, "question_index": q, "question": question,
                "conversation": [{"role": "system", "content": system}, {"role": "user", "content": question},
                                 {"role": "assistant", "content": reply}],
            }))
            score[f"pos_p0_q{q}"] = 3
        (responses / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
        (scores / f"{name}.json").write_text(json.dumps(score))


def run_backfill(work: Path, label: str, data_root: Path, model: str, names: list[str], per_run: int, in_process: bool) -> tuple[float, int]:
    """Backfill the given roles in a child process (fresh instance, fresh env); returns (seconds, runs)."""
    home = work / f"home-{label}"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "PERSONA_DATA_ROOT": str(data_root),
           "PERSONA_ARTIFACT_ROOT": str(work / f"artifacts-{label}"), "PERSONA_MODEL": str(model),
           "PERSONA_DATASETS_PER_RUN": str(per_run), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PERSONA_CONCEPTS_ROOT": str(work), "PERSONA_SAE_CONFIG": str(work / "none.json"),
           "PERSONA_SCENARIOS_ROOT": str(work), "PERSONA_INSTRUCTIONS_ROOT": str(work / "instructions"),
           "PERSONA_JUDGE_BACKEND": "likelihood", "PERSONA_JUDGE_LOCAL_MODEL": model}
    keys = ",".join(f"{SOURCE_MODEL}/{n}" for n in names)
    command = [str(Path(sys.executable).parent / "steering-assets"), "backfill", "roles", "--partitions", keys]
    if in_process:
        command.append("--in-process")
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0 or f"{len(names)} of {len(names)} roles partitions materialised" not in proc.stdout:
        sys.exit(f"{label} backfill failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    runs = sum(1 for line in proc.stdout.splitlines() if line.strip().startswith("run "))
    return seconds, runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--roles", type=int, default=275)
    parser.add_argument("--baseline-sample", type=int, default=0, help="time one-run-per-persona on this many roles and scale")
    parser.add_argument("--in-process", action="store_true", help="run both backfills in the CLI's process (no daemon)")
    args = parser.parse_args()
    names = role_names(args.roles)
    with tempfile.TemporaryDirectory(prefix="backfill-bench-") as tmp:
        work = Path(tmp)
        write_tree(work / "data", names)
        model = MODEL  # resolved to the converted folder in the model cache (converted once per machine)
        mode = "in this process" if args.in_process else "dagster-daemon, one process per run"
        print(f"{len(names)} roles, {QUESTIONS} of SmolLM2's recorded replies each; runs launched by {mode}")
        chunked_s, chunked_runs = run_backfill(work, "chunked", work / "data", model, names, 25, args.in_process)
        print(f"chunked (25 personas a run):  {chunked_s:7.1f} s  {chunked_runs} runs")
        n = args.baseline_sample
        if 0 < n and 2 * n < len(names):
            small_s, small_runs = run_backfill(work, "single-a", work / "data", model, names[:n], 1, args.in_process)
            large_s, large_runs = run_backfill(work, "single-b", work / "data", model, names[n: 3 * n], 1, args.in_process)
            per_run = (large_s - small_s) / n
            fixed = small_s - per_run * n
            single_s, single_runs = fixed + per_run * len(names), len(names)
            print(f"one run per persona, measured: {small_s:.1f} s for {small_runs} runs, {large_s:.1f} s for {large_runs} runs "
                  f"-> {fixed:.1f} s fixed + {per_run:.2f} s per run")
            note = " (estimated from the two measurements)"
        else:
            single_s, single_runs = run_backfill(work, "single", work / "data", model, names, 1, args.in_process)
            note = ""
        print(f"one run per persona:          {single_s:7.1f} s  {single_runs} runs{note}")
        print(f"ratio (one run per persona / chunked wall time): {single_s / chunked_s:.1f}x; runs {single_runs / chunked_runs:.0f}x fewer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
