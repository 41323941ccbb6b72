"""Build the offline demo workspace: rollouts, a tiny model and its tokenizer. Cached by a stamp."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from steering_assets.artifacts import write_json_atomic
from steering_assets.demo.corpus import SOURCE_MODEL, iter_demo_texts, write_demo_rollouts
from steering_assets.demo.stages import BackgroundJob, StageClock, trainer_progress, training_progress

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
    build = start_demo_build(root, seed, force, pretrain_steps, clock)
    return build.workspace, build.built


@dataclass
class DemoBuild:
    """A demo workspace whose demo judge may still be training in a second process (``judge``)."""

    workspace: DemoWorkspace
    built: bool
    judge: BackgroundJob | None = None

    def wait_for_judge(self) -> None:
        """Block until the demo judge and the scenarios are ready; raises what their training raised."""
        if self.judge is not None:
            self.judge.result()

    def judge_ready(self) -> bool:
        return self.judge is None or self.judge.poll()


def start_demo_build(
    root: Path | str, seed: int = 0, force: bool = False, pretrain_steps: int = PRETRAIN_STEPS,
    clock: StageClock | None = None, judge_in_background: bool = False,
) -> DemoBuild:
    """``build_demo_workspace``, optionally with the demo judge trained beside the rest.

    ``judge_in_background``: when the judge needs training, it trains in a second process with
    one torch thread while this process builds the demo model, the SAEs (and whatever the caller
    does next) with one thread fewer; ``DemoBuild.wait_for_judge`` joins it. The judge needs
    nothing the demo model build writes, so on two cores the two overlap instead of queueing.
    """
    clock = clock or StageClock(write=lambda line: None)
    workspace = DemoWorkspace(Path(root).resolve())
    stamp_path = workspace.root / STAMP
    wanted = {"version": DEMO_VERSION, "seed": seed, "pretrain_steps": pretrain_steps}
    model_current = False
    if not force and stamp_path.is_file():
        stamp = json.loads(stamp_path.read_text())
        model_current = all(stamp.get(key) == value for key, value in wanted.items())
    judge = None
    if judge_in_background and (force or not _vetting_inputs_current(workspace, seed)):
        judge = BackgroundJob(clock, _build_vetting_inputs, workspace, seed, True, setup=_one_torch_thread,
                              on_done=_give_back_torch_thread())
    if model_current:
        clock.line(f"demo corpus and demo model: cached ({stamp_path})")
        features_built = _build_feature_inputs(workspace, seed, force, clock)
        vetting_built = judge is not None or (not judge_in_background and _build_vetting_inputs(workspace, seed, force, clock))
        return DemoBuild(workspace, features_built or vetting_built, judge)
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
        save_tiny_model(iter_demo_texts(workspace.data_root), workspace.model_path, seed=seed)
    pretraining = {}
    if pretrain_steps:
        from steering_assets.demo.pretrain import pretrain_demo_model

        with clock.stage(f"demo model pretraining ({pretrain_steps} steps)"):
            pretraining = pretrain_demo_model(workspace.model_path, workspace.data_root, steps=pretrain_steps, seed=seed,
                                              callbacks=[training_progress(clock)])
    write_json_atomic({**wanted, "seconds": round(time.perf_counter() - started, 1), "pretraining": pretraining}, stamp_path)
    _build_feature_inputs(workspace, seed, True, clock)
    if not judge_in_background:
        _build_vetting_inputs(workspace, seed, True, clock)
    return DemoBuild(workspace, True, judge)


def _one_torch_thread() -> None:
    """The background judge's process: one intra-op thread (the other core is this process's)."""
    import torch

    torch.set_num_threads(1)


def _give_back_torch_thread() -> Callable[[], None]:
    """Take one torch thread from this process while the background judge trains; the returned
    callable gives it back (called when the judge is done)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads - 1))
    return lambda: torch.set_num_threads(threads)


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


def _vetting_inputs_current(workspace: DemoWorkspace, seed: int) -> bool:
    stamp_path = workspace.root / VETTING_STAMP
    stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    wanted = {"version": VETTING_VERSION, "seed": seed}
    return all(stamp.get(k) == v for k, v in wanted.items()) and workspace.judge_path.is_dir()


def _build_vetting_inputs(workspace: DemoWorkspace, seed: int, force: bool, clock: StageClock) -> bool:
    """Contrastive scenarios with their expected verdicts, and the demo judge: a cached stage of its own."""
    stamp_path = workspace.root / VETTING_STAMP
    wanted = {"version": VETTING_VERSION, "seed": seed}
    if not force and _vetting_inputs_current(workspace, seed):
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
