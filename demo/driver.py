"""The demo's driver: the whole graph on SmolLM2-135M-Instruct, offline, through the product's public functions.

Every stage is a Dagster backfill of the code location (``steering_assets.cli.launcher``), executed
in this process; the tables come from ``steering_assets.cli.reports`` and ``demo.report``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from demo.stages import format_elapsed
from steering_assets.cli.launcher import (
    Launcher,
    backfill_persona_datasets,
    failed_partitions,
    job_assets,
    judged_stage,
    run_assets,
    steering_stage,
)
from steering_assets.cli.reports import (
    print_concept_classifiers,
    print_evaluations,
    print_method_comparison,
    print_summary,
    print_table,
    print_vetting,
)
from steering_assets.core.artifacts import ArtifactStore


def _kind_keys(instance, model_name: str, instructions_root: Path, log) -> dict[str, list[str]]:
    """Each kind's partitions of ``model_name`` that have an instruction file under ``instructions_root``.

    A partition whose file was deleted since it was added stays in the instance (its rollouts and
    artifacts remain); it is named through ``log`` and left out rather than failing the backfill.
    """
    from steering_assets.formats.instructions import discover_instructions
    from steering_assets.formats.rollouts import PERSONA_KINDS
    from steering_assets.partitions.personas import PARTITIONS_BY_KIND

    keys = {}
    for kind_name, partitions_def in PARTITIONS_BY_KIND.items():
        present = set(discover_instructions(instructions_root, PERSONA_KINDS[kind_name]))
        ours = [k for k in instance.get_dynamic_partitions(partitions_def.name) if k.startswith(f"{model_name}/")]
        gone = [k for k in ours if k.split("/", 1)[1] not in present]
        if gone:
            log(f"{kind_name}: left out {len(gone)} partition(s) whose instruction file is gone: {', '.join(gone)}")
        keys[kind_name] = [k for k in ours if k not in gone]
    return keys


def run_demo(workspace_dir: str | Path = ".demo", started_at: float | None = None) -> int:
    """The whole graph on SmolLM2-135M-Instruct, offline: README "Quick start" says what it prints.

    ``started_at``: when the command that runs the demo started (epoch seconds; the Makefile passes it),
    so the profile counts the install before this process. Returns the exit status (1 if a partition failed).
    """
    from demo import location
    from demo.build import DEMO_MODEL, write_demo_inputs
    from demo.instructions import DEMO_ROLES, DEMO_TRAITS
    from demo.stages import StageClock
    from steering_assets.core.known_warnings import silence_known_warnings
    from steering_assets.core.progress import PROGRESS_SINK

    _openmp_wait_policy()
    # Dagster's known, explained warnings (e.g. an unawaited coroutine after every in-process run)
    # would bury the stage lines; every other warning still shows.
    silence_known_warnings()
    clock = StageClock(lambda line: print(line, flush=True), started=started_at)
    # The runs execute in this process: their assets' progress lines join the stage lines.
    PROGRESS_SINK.write = clock.progress
    if started_at is not None:
        # The Makefile passes the time it started: what came before this process is the install.
        clock.record("install (make install) and start-up", clock.elapsed(), start_s=0.0)
    workspace = write_demo_inputs(workspace_dir)
    clock.line(f"demo workspace: {workspace.root} (instruction files for {len(DEMO_ROLES)} roles and {len(DEMO_TRAITS)} "
               f"traits, scenarios); persona model and judge: {DEMO_MODEL}")
    # The code location is built from the demo workspace's settings, passed explicitly (demo/location.py).
    target = location.use(workspace.settings())
    # Every stage is a Dagster backfill of the code location (UI: Overview -> Backfills, the
    # asset pages and the run timeline), executed in this process: see steering_assets/cli/launch.py.
    with contextlib.ExitStack() as stack:
        with clock.stage("Dagster instance"):
            launcher = stack.enter_context(Launcher(in_process=True, log=clock.progress, target=target))
        with _backfill_stage(clock, launcher, "persona model (GGUF converted once per machine, then described)"):
            if not run_assets(launcher, ["models", "persona_model"]):
                return 1
        failed, model_name, keys, agreement = _persona_stages(clock, launcher, workspace)
        more, concepts, traits = _feature_and_vetting_stages(clock, launcher, workspace, model_name, keys["traits"])
        failed += more
    with clock.stage("summaries"):
        _print_demo_summaries(workspace, agreement, concepts, traits)
    print("\nProfile (wall and CPU seconds per stage; CPU counts both cores, so it can exceed wall)")
    print_table(["stage", "wall s", "CPU s", "share", "note"], clock.profile_rows())
    print(
        f"\nDone in {format_elapsed(clock.elapsed())}. Where to look:\n"
        f"  artifacts:     {workspace.artifact_root}\n"
        f"  rollouts:      {workspace.data_root} (generated by {DEMO_MODEL}, with the judge's scores)\n"
        f"  instructions:  {workspace.instructions_root} (add a role file, then re-run: only it is generated)\n"
        f"  scenarios:     {workspace.scenarios_root} (fix a failing line, then re-run or let the automation re-vet it)\n"
        f"  Dagster UI:    make ui, then open http://127.0.0.1:3000 (asset lineage, metadata, checks, runs)"
    )
    return 1 if failed else 0


def _persona_stages(clock, launcher: Launcher, workspace) -> tuple[int, str, dict[str, list[str]], list]:
    """Rollouts generated and judged, the judge's agreement, persona datasets, steering and the judged evaluation.

    Returns the failed partitions, the rollouts' source-model name, each kind's persona keys and the agreement.
    """
    from demo import settings as demo
    from demo.build import DEMO_MODEL
    from steering_assets.formats.instructions import rollout_model_name
    from steering_assets.partitions.personas import sync_instruction_partitions
    from steering_assets.resources.language_model import ModelSource

    failed = 0
    instance = launcher.instance
    model_name = rollout_model_name(ModelSource(model_name_or_path=DEMO_MODEL).display_name,
                                    workspace.settings().rollout_model_name)
    sync_instruction_partitions(instance, workspace.instructions_root, model_name)
    keys = _kind_keys(instance, model_name, workspace.instructions_root, clock.line)
    for kind_name, kind_keys in keys.items():
        with _backfill_stage(clock, launcher, f"{kind_name} rollouts: generated and judged (backfill)"):
            outcome = launcher.backfill([[kind_name, "generated_rollouts"], [kind_name, "rollout_scores"]], kind_keys,
                                        title=f"{kind_name} rollouts", run_config=demo.generation_run_config(kind_name))
            failed += failed_partitions(outcome)
    roles = [k for k in keys["roles"] if not k.endswith("/default")]
    with clock.stage("judge agreement (role replies against default replies, AUROC)"):
        agreement = _demo_judge_agreement(workspace, model_name, [k.split("/", 1)[1] for k in roles])
    persona_keys = {"roles": roles, "traits": keys["traits"]}
    for kind_name, kind_keys in persona_keys.items():
        with _backfill_stage(clock, launcher, f"{kind_name} datasets (backfill)"):
            failed += backfill_persona_datasets(launcher, kind_name, kind_keys, demo.dataset_run_config(kind_name))
        with _backfill_stage(clock, launcher, f"{kind_name} steering (backfill)"):
            failed += steering_stage(launcher, kind_name, kind_keys, demo.steering_run_config(kind_name))
    with _backfill_stage(clock, launcher, "roles judged steering evaluation (backfill)"):
        failed += judged_stage(launcher, "roles", roles, demo.judged_run_config("roles"))
    with _backfill_stage(clock, launcher, "persona space: role vectors (backfill), axis, PCA, capping, drift"):
        failed += _persona_space_stage(launcher, keys["roles"])
    return failed, model_name, persona_keys, agreement


def _persona_space_stage(launcher: Launcher, role_keys: list[str]) -> int:
    """Role vectors of every role and the default assistant, then the fan-ins over them (one run)."""
    from demo import settings as demo

    failed = failed_partitions(launcher.backfill([["roles", "role_vector"]], role_keys, title="role vectors",
                                                 run_config=demo.role_vector_run_config()))
    fan_ins = [["persona_space", name] for name in ("assistant_axis", "persona_pca", "capping_config", "persona_drift", "capping_eval")]
    outcome = launcher.backfill(fan_ins, None, title="persona space", run_config=demo.persona_space_run_config())
    return failed + (0 if outcome.success else 1)


def _feature_and_vetting_stages(clock, launcher: Launcher, workspace, model_name: str,
                                trait_keys: list[str]) -> tuple[int, list[str], list[str]]:
    """Concept sentences and SAEs, the concept features, then vetting; returns the failures, concepts and traits."""
    from demo import settings as demo
    from steering_assets.partitions.concepts import sync_concept_partitions
    from steering_assets.partitions.scenarios import sync_scenario_partitions

    failed = 0
    instance = launcher.instance
    with clock.stage("concept sentences (the traits' scored replies) and SAEs (SmolLM2's residual stream)"):
        _demo_feature_inputs(workspace, model_name, [k.split("/", 1)[1] for k in trait_keys], clock.progress)
        sync_concept_partitions(instance, workspace.concepts_root)
        concepts = instance.get_dynamic_partitions("concepts")
    with _backfill_stage(clock, launcher, "concept features (backfill)"):
        feature_assets = [list(k.path) for k in job_assets(launcher, "concept_features")]
        failed += failed_partitions(launcher.backfill(feature_assets, concepts, title="concept features",
                                                       run_config=demo.feature_run_config()))
    sync_scenario_partitions(instance, workspace.scenarios_root)
    traits = instance.get_dynamic_partitions("scenario_traits")
    with _backfill_stage(clock, launcher, "vetting (backfill)"):
        # A vetting run succeeds when items fail: failing items are what the checks and the report show.
        vetting_assets = [list(k.path) for k in job_assets(launcher, "vetting")]
        failed += failed_partitions(launcher.backfill(vetting_assets, traits, title="vetting"))
    return failed, concepts, traits


def _demo_judge(workspace):
    """The likelihood judge the code location's resource builds, with the same judgment cache."""
    from demo.build import DEMO_MODEL
    from steering_assets.resources.judge import JudgeResource

    return JudgeResource(backend="likelihood", local_model=DEMO_MODEL).judge(ArtifactStore(workspace.artifact_root).folder("judgments"))


def _demo_judge_agreement(workspace, model_name: str, roles: list[str]):
    from demo.report import role_judge_agreement

    return role_judge_agreement(_demo_judge(workspace), workspace.data_root, workspace.instructions_root, model_name,
                                model_name, roles)


def _demo_feature_inputs(workspace, model_name: str, traits: list[str], log) -> None:
    from demo.build import DEMO_MODEL
    from demo.features import train_demo_saes, write_demo_concepts
    from steering_assets.models.pretrained import resolve_model

    counts = write_demo_concepts(workspace.data_root, model_name, workspace.concepts_root, traits, log=log)
    for trait, by_label in counts.items():
        log(f"concept {trait}: sentences per label 0-3: {' / '.join(str(by_label[label]) for label in range(4))}")
    judge = _demo_judge(workspace)  # the same weights, already loaded: the SAEs read its residual stream
    train_demo_saes(judge.model, judge.tokenizer, Path(resolve_model(DEMO_MODEL)), workspace.data_root,
                    workspace.sae_config.parent, log=log)


def _print_demo_summaries(workspace, agreement, concepts: list[str], traits: list[str]) -> None:
    from demo.report import CONCEPT_MARGIN, FLUENCY_FLOOR, steered_samples, vector_effects
    from steering_assets.formats.rollouts import ROLES, discover_personas

    store = ArtifactStore(workspace.artifact_root)
    print("\nThe offline judge (SmolLM2's likelihood ratios, steering_assets/judge/likelihood.py) on labels known by construction: "
          "each role's replies against the default assistant's, both rated for the role (0-100)")
    print_table(["role", "AUROC", "role replies (mean)", "default replies (mean)"],
                 [[a.role, f"{a.auroc:.3f}", f"{a.role_replies} ({a.role_mean:.0f})", f"{a.default_replies} ({a.default_mean:.0f})"]
                  for a in agreement])
    print("\nPersona datasets (the judge's kept replies)")
    print_summary(store, workspace.data_root)
    print("\nSteering vectors (persona-classifier probability of the target persona on replies to neutral prompts; "
          "strengths in typical residual norms, against a random direction of the same norm)")
    print_evaluations(store, workspace.data_root)
    print("\nSteering methods compared by the judge (harmonic mean of concept, instruction and fluency, 0-2, on the "
          "report half; the factor, in typical residual norms, chosen on the other half)")
    print_method_comparison(store, workspace.data_root)
    refs = [ref for ref in discover_personas(workspace.data_root, ROLES).personas if not ref.is_baseline]
    effects = vector_effects(store, refs)
    if effects:
        print_table(["persona", "vector (factor)", "concept above random", "fluency", "effect"],
                     [[e.persona, f"{e.method} (x{e.factor:g})", f"{e.concept_gain:+.2f}", f"{e.fluency:.2f}",
                       "yes" if e.holds else "no"] for e in effects])
        print(f"a vector raises the judged concept over the random direction by >= {CONCEPT_MARGIN} (of 2) with fluency "
              f">= {FLUENCY_FLOOR} for {sum(e.holds for e in effects)} of {len(effects)} roles")
    print("\nSteered samples (the best vector method at its chosen factor, and the unsteered reply to the same instruction)")
    for sample in steered_samples(store, refs):
        print(f"  {sample['persona']} | {sample['instruction']}\n    {sample['method']}: {sample['steered']}\n"
              f"    unsteered: {sample['unsteered']}")
    from demo.report import print_persona_space

    print_persona_space(store)
    print("\nConcept classifiers (cross-validated, best model per dataset; labels: the judge's trait scores)")
    print_concept_classifiers(store, concepts)
    print("\nVetting (the likelihood judge; pass: positive >= 60, negative <= 40)")
    print_vetting(store, workspace.scenarios_root, traits)
    print()


def _openmp_wait_policy(sample_seconds: float = 1.0) -> None:
    """OMP_WAIT_POLICY for this process: torch's default (spin) on an idle machine, PASSIVE beside other work.

    torch's OpenMP threads spin a while when they wait for work. Alone on the machine that is the fastest:
    steering training on SmolLM2 took 1.43 s a step spinning against 1.67 s passive here (0.86x); beside one
    busy process a spinning thread burns the time slice its partner needs: 3.97 s against 2.32 s (1.71x;
    ``benchmarks/omp_wait_policy.py``). So the other processes' CPU use is sampled for ``sample_seconds``
    before torch loads (the policy is read once, when torch's OpenMP runtime starts): from a quarter of a core
    on, waits are passive. A value set in the environment is kept; where /proc/stat is not readable, PASSIVE.
    """
    if "torch" in sys.modules:
        print("note: torch was imported before the demo chose OMP_WAIT_POLICY; it keeps torch's default", flush=True)
        return
    if "OMP_WAIT_POLICY" in os.environ:
        print(f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} (from the environment)", flush=True)
        return
    busy = other_processes_cpu(sample_seconds)
    if busy is None or busy >= 0.25:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        why = "the machine's load cannot be read" if busy is None else f"other processes use {busy:.2f} cores"
        print(f"OMP_WAIT_POLICY=PASSIVE: {why} (torch's spinning waits would take their time slices)", flush=True)
    else:
        print(f"OpenMP waits spin (torch's default): other processes use {busy:.2f} cores", flush=True)


def other_processes_cpu(seconds: float) -> float | None:
    """Cores that processes other than this one kept busy over ``seconds`` (from /proc/stat), or None off Linux."""
    import time

    def sample() -> tuple[float, float]:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # everything but idle and iowait
        own = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system

    try:
        (busy0, own0), began = sample(), time.monotonic()
        time.sleep(seconds)
        (busy1, own1), ended = sample(), time.monotonic()
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / (ended - began)


@contextlib.contextmanager
def _backfill_stage(clock, launcher: Launcher, name: str):
    """A stage made of backfills: timed by ``clock``, with the seconds of each asset step of its runs as its parts."""
    first = len(launcher.backfill_ids)
    with clock.stage(name) as note:
        try:
            yield note
        finally:
            for backfill_id in launcher.backfill_ids[first:]:
                for step, seconds in launcher.step_seconds(backfill_id).items():
                    note.parts[step] = note.parts.get(step, 0.0) + seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description="Build the offline demo workspace and materialise every asset.")
    parser.add_argument("--workspace", default=".demo", help="demo folder (default .demo)")
    parser.add_argument("--started-at", type=float, metavar="EPOCH_SECONDS",
                        help="when the command that runs the demo started (the Makefile passes its start), so that "
                             "the profile counts the install before it")
    args = parser.parse_args(argv)
    return run_demo(args.workspace, args.started_at)
