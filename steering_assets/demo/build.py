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
STEERING_JUDGE_STAMP = "steering_judge_stamp.json"
STEERING_JUDGE_VERSION = "1"


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

    @property
    def steering_judge_path(self) -> Path:
        """The judge that rates steered generations 0-2 (``demo/steering_judge.py``)."""
        return self.root / "models" / "demo-steering-judge"


# Base-model training steps: enough for every persona's voice to become a mode of the
# model's plain assistant turn (about two minutes on 2 CPU cores); the loss is flat from about
# step 300 (0.32 at 315, 0.33 at 350; 0.27-0.28 from 359 to 400 in a 400-step run). 0 leaves it random.
PRETRAIN_STEPS = 350


def build_demo_workspace(
    root: Path | str, seed: int = 0, force: bool = False, pretrain_steps: int = PRETRAIN_STEPS,
    clock: StageClock | None = None, steering_judge_steps: int | None = None,
) -> tuple[DemoWorkspace, bool]:
    """Create (or reuse) the demo workspace under ``root``; returns it and whether it was built now.

    ``clock``: each build stage is timed and printed through it (``make demo``); silent by default.
    ``steering_judge_steps``: training steps of the steering judge (default ``STEERING_JUDGE_STEPS``);
    0 builds none (tests of the mechanics), and the vetting judge's settings then rate steered text.
    """
    build = start_demo_build(root, seed, force, pretrain_steps, clock, steering_judge_steps=steering_judge_steps)
    return build.workspace, build.built


@dataclass
class DemoBuild:
    """A demo workspace whose judges may still be training in a second process (``judge``: the
    vetting judge, ``steering_judge``: the judge of steered generations)."""

    workspace: DemoWorkspace
    built: bool
    judge: BackgroundJob | None = None
    steering_judge: BackgroundJob | None = None

    def wait_for_judge(self, clock: StageClock | None = None) -> None:
        """Block until the demo judge and the scenarios are ready; raises what their training raised.
        A wait is timed on ``clock`` as a stage of its own."""
        _wait_lending_threads(self.judge, clock, "waiting for the demo judge")

    def judge_ready(self) -> bool:
        return self.judge is None or self.judge.poll()

    def wait_for_steering_judge(self, clock: StageClock | None = None) -> None:
        """Block until the demo steering judge is ready; raises what its training raised.
        A wait is timed on ``clock`` as a stage of its own."""
        _wait_lending_threads(self.steering_judge, clock, "waiting for the demo steering judge")


def _wait_lending_threads(job: BackgroundJob | None, clock: StageClock | None, stage: str) -> None:
    """Wait for ``job``, lending it this process's threads meanwhile (this process only waits)."""
    if job is None:
        return
    if not job.poll():
        job.lend_threads(_THREADS.own or 1)
        with (clock or StageClock(write=lambda line: None)).stage(stage):
            job.result()
    job.result()  # raises what its training raised


def start_demo_build(
    root: Path | str, seed: int = 0, force: bool = False, pretrain_steps: int = PRETRAIN_STEPS,
    clock: StageClock | None = None, judge_in_background: bool = False, steering_judge_steps: int | None = None,
) -> DemoBuild:
    """``build_demo_workspace``, optionally with the demo judge trained beside the rest.

    ``judge_in_background``: when the judge needs training, it trains in a second process with
    one torch thread while this process builds the demo model, the SAEs (and whatever the caller
    does next) with one thread fewer; ``DemoBuild.wait_for_judge`` joins it. The judge needs
    nothing the demo model build writes, so on two cores the two overlap instead of queueing.
    The steering judge starts from the trained demo model: it trains in a second process too
    (when ``judge_in_background``) from then on, beside the SAEs and the caller's stages.
    """
    from steering_assets.demo.steering_judge import STEERING_JUDGE_STEPS

    steering_steps = STEERING_JUDGE_STEPS if steering_judge_steps is None else steering_judge_steps
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
        judge = BackgroundJob(clock, _build_vetting_inputs, workspace, seed, True, on_done=_THREADS.take(), threads=1)
    if model_current:
        clock.line(f"demo corpus and demo model: cached ({stamp_path})")
        steering_judge, steering_built = _steering_judge(workspace, seed, steering_steps, force, clock, judge_in_background)
        features_built = _build_feature_inputs(workspace, seed, force, clock)
        vetting_built = judge is not None or (not judge_in_background and _build_vetting_inputs(workspace, seed, force, clock))
        return DemoBuild(workspace, features_built or vetting_built or steering_built, judge, steering_judge)
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
    # The steering judge starts from the demo model just trained: it trains beside the rest from here.
    steering_judge, _ = _steering_judge(workspace, seed, steering_steps, True, clock, judge_in_background)
    _build_feature_inputs(workspace, seed, True, clock)
    if not judge_in_background:
        _build_vetting_inputs(workspace, seed, True, clock)
    return DemoBuild(workspace, True, judge, steering_judge)


class _TorchThreads:
    """This process's torch threads: one fewer for each background judge training beside it (each
    runs on one thread: ``BackgroundJob(threads=1)``), all of them lent to a judge it waits for."""

    def __init__(self) -> None:
        self.own: int | None = None
        self.jobs = 0

    def take(self) -> Callable[[], None]:
        """Take one thread while a background job runs; the returned callable gives it back (once)."""
        import torch

        if self.jobs == 0:
            self.own = torch.get_num_threads()
        self.jobs += 1
        torch.set_num_threads(max(1, self.own - self.jobs))
        given = []

        def give_back() -> None:
            if not given:
                given.append(True)
                self.jobs -= 1
                torch.set_num_threads(max(1, self.own - self.jobs))

        return give_back


_THREADS = _TorchThreads()


def _model_digest(workspace: DemoWorkspace) -> str:
    """The demo model's weights, by content: the steering judge is current only for the model it started from."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(workspace.model_path.glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _steering_judge_wanted(workspace: DemoWorkspace, seed: int, steps: int) -> dict:
    from steering_assets.demo import steering_judge as recipe

    return {"version": STEERING_JUDGE_VERSION, "seed": seed, "steps": steps, "demo_model": _model_digest(workspace),
            "recipe": [recipe.STEERING_JUDGE_BATCH, recipe.STEERING_JUDGE_LEARNING_RATE, recipe.STEERING_JUDGE_OWN_REPLIES,
                       recipe.STEERING_JUDGE_SYNTHETIC]}


def _steering_judge_current(workspace: DemoWorkspace, seed: int, steps: int) -> bool:
    stamp_path = workspace.root / STEERING_JUDGE_STAMP
    stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    wanted = _steering_judge_wanted(workspace, seed, steps)
    return all(stamp.get(k) == v for k, v in wanted.items()) and workspace.steering_judge_path.is_dir()


def _steering_judge(workspace: DemoWorkspace, seed: int, steps: int, force: bool, clock: StageClock,
                    in_background: bool) -> tuple[BackgroundJob | None, bool]:
    """Build the steering judge unless current: in a second process when ``in_background``.
    Returns the background job (or None) and whether it is being built."""
    if steps == 0:
        clock.line("demo steering judge: none (0 steps); steered replies are rated with the vetting judge's settings")
        return None, False
    if not force and _steering_judge_current(workspace, seed, steps):
        clock.line(f"demo steering judge: cached ({workspace.root / STEERING_JUDGE_STAMP})")
        return None, False
    if in_background:
        return BackgroundJob(clock, _build_steering_judge, workspace, seed, steps, on_done=_THREADS.take(),
                             threads=1), True
    _build_steering_judge(workspace, seed, steps, clock)
    return None, True


def _build_steering_judge(workspace: DemoWorkspace, seed: int, steps: int, clock: StageClock) -> dict:
    """The demo model's own steered replies, labelled with their known ratings, and the steering judge trained on them."""
    from steering_assets.demo.steering_judge import build_steering_judge

    stamp_path = workspace.root / STEERING_JUDGE_STAMP
    stamp_path.unlink(missing_ok=True)
    wanted = _steering_judge_wanted(workspace, seed, steps)
    with clock.stage(f"demo steering judge (own replies, {steps} training steps)"), \
            trainer_progress(clock):
        training = build_steering_judge(workspace.steering_judge_path, workspace.model_path, seed=seed, steps=steps)
        clock.progress("agreement with the known ratings of fresh own replies: " + ", ".join(
            f"{criterion} {share:.0%}" for criterion, share in training["validation"].items())
            + f" (attempt {training['attempt']})")
    write_json_atomic({**wanted, "training": training}, stamp_path)
    return training


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
