"""Build the offline demo workspace: rollouts, a tiny model and its tokenizer. Cached by a stamp."""

from __future__ import annotations

import itertools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from steering_assets.artifacts import write_json_atomic
from steering_assets.demo.corpus import SOURCE_MODEL, iter_demo_texts, write_demo_rollouts
from steering_assets.demo.stages import StageClock, trainer_progress, training_progress

# Bump when the corpus or the model recipe changes, so cached workspaces are rebuilt.
DEMO_VERSION = "3"
STAMP = "demo_stamp.json"
FEATURES_STAMP = "features_stamp.json"
FEATURES_VERSION = "2"
VETTING_STAMP = "vetting_stamp.json"
VETTING_VERSION = "2"


@dataclass(frozen=True)
class DemoWorkspace:
    root: Path

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def model_path(self) -> Path:
        return self.root / "models" / SOURCE_MODEL

    @property
    def artifact_root(self) -> Path:
        return self.root / "artifacts"

    @property
    def concepts_root(self) -> Path:
        return self.root / "concepts"

    @property
    def sae_config(self) -> Path:
        return self.root / "saes" / "saes.json"

    @property
    def scenarios_root(self) -> Path:
        return self.root / "scenarios"

    @property
    def scenario_truth(self) -> Path:
        return self.root / "scenario_truth.json"

    @property
    def judge_path(self) -> Path:
        return self.root / "models" / "demo-judge"


TOKENIZER_SAMPLE = 5

# Base-model training steps: enough for every persona's voice to become a mode of the
# model's plain assistant turn (about two minutes on 2 CPU cores). 0 leaves it random.
PRETRAIN_STEPS = 400


def build_demo_workspace(
    root: Path | str, seed: int = 0, force: bool = False, pretrain_steps: int = PRETRAIN_STEPS,
    clock: StageClock | None = None,
) -> tuple[DemoWorkspace, bool]:
    """Create (or reuse) the demo workspace under ``root``; returns it and whether it was built now.

    ``clock``: each build stage is timed and printed through it (``make demo``); silent by default.
    """
    clock = clock or StageClock(write=lambda line: None)
    workspace = DemoWorkspace(Path(root).resolve())
    stamp_path = workspace.root / STAMP
    wanted = {"version": DEMO_VERSION, "seed": seed, "pretrain_steps": pretrain_steps}
    if not force and stamp_path.is_file():
        stamp = json.loads(stamp_path.read_text())
        if all(stamp.get(key) == value for key, value in wanted.items()):
            clock.line(f"demo corpus and demo model: cached ({stamp_path})")
            features_built = _build_feature_inputs(workspace, seed, force, clock)
            return workspace, _build_vetting_inputs(workspace, seed, force, clock) or features_built
    # A stale or half-built workspace is rebuilt from scratch; artifacts are kept,
    # their fingerprints decide whether they are still current.
    stamp_path.unlink(missing_ok=True)
    for folder in (workspace.data_root, workspace.model_path):
        shutil.rmtree(folder, ignore_errors=True)
    from steering_assets.demo.model import save_tiny_model

    started = time.perf_counter()
    with clock.stage("demo corpus (rollouts)"):
        write_demo_rollouts(workspace.data_root, seed=seed)
    with clock.stage("tokenizer and tiny demo model"):
        # Every TOKENIZER_SAMPLE-th text: the templated corpus repeats itself, and a fifth of it gives a
        # vocabulary within about 1% of the full corpus's token counts in a fifth of the time.
        save_tiny_model(itertools.islice(iter_demo_texts(workspace.data_root), 0, None, TOKENIZER_SAMPLE),
                        workspace.model_path, seed=seed)
    pretraining = {}
    if pretrain_steps:
        from steering_assets.demo.pretrain import pretrain_demo_model

        with clock.stage(f"demo model pretraining ({pretrain_steps} steps)"):
            pretraining = pretrain_demo_model(workspace.model_path, workspace.data_root, steps=pretrain_steps, seed=seed,
                                              callbacks=[training_progress(clock)])
    write_json_atomic({**wanted, "seconds": round(time.perf_counter() - started, 1), "pretraining": pretraining}, stamp_path)
    _build_feature_inputs(workspace, seed, True, clock)
    _build_vetting_inputs(workspace, seed, True, clock)
    return workspace, True


def _build_feature_inputs(workspace: DemoWorkspace, seed: int, force: bool, clock: StageClock) -> bool:
    """Concept sentences and SAEs (the interpretability inputs): a cached stage of its own."""
    stamp_path = workspace.root / FEATURES_STAMP
    wanted = {"version": FEATURES_VERSION, "seed": seed}
    if not force and stamp_path.is_file() and json.loads(stamp_path.read_text()) == wanted and workspace.sae_config.is_file():
        clock.line(f"concepts and SAEs: cached ({stamp_path})")
        return False
    from steering_assets.demo.features import train_demo_saes, write_demo_concepts

    stamp_path.unlink(missing_ok=True)
    with clock.stage("concept sentences and SAEs"):
        write_demo_concepts(workspace.concepts_root, seed=seed)
        train_demo_saes(workspace.model_path, workspace.data_root, workspace.sae_config.parent, seed=seed)
    write_json_atomic(wanted, stamp_path)
    return True


def _build_vetting_inputs(workspace: DemoWorkspace, seed: int, force: bool, clock: StageClock) -> bool:
    """Contrastive scenarios with their expected verdicts, and the demo judge: a cached stage of its own."""
    stamp_path = workspace.root / VETTING_STAMP
    wanted = {"version": VETTING_VERSION, "seed": seed}
    stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    if not force and all(stamp.get(k) == v for k, v in wanted.items()) and workspace.judge_path.is_dir():
        if not all((folder / "verdicts.jsonl").is_file() for folder in workspace.scenarios_root.glob("*/*")):
            # A workspace built before verdicts files existed: the scenarios are rewritten (the same
            # lines, from the same seed) with them, without training the judge again.
            from steering_assets.demo.vetting import write_demo_scenarios

            write_demo_scenarios(workspace.scenarios_root, workspace.scenario_truth, seed=seed)
        clock.line(f"scenarios and demo judge: cached ({stamp_path})")
        return False
    from steering_assets.demo.vetting import JUDGE_STEPS, held_out_questions, train_demo_judge, write_demo_scenarios

    stamp_path.unlink(missing_ok=True)
    with clock.stage(f"scenarios and demo judge training ({JUDGE_STEPS} steps)"), trainer_progress(clock):
        write_demo_scenarios(workspace.scenarios_root, workspace.scenario_truth, seed=seed)
        training = train_demo_judge(workspace.judge_path, exclude=set(held_out_questions(seed)), seed=seed)
    write_json_atomic({**wanted, "judge_training": training}, stamp_path)
    return True
