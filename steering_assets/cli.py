"""Command line: build and run the demo, discover partitions, backfill persona jobs.

    steering-assets demo [--workspace .demo]
    steering-assets sync-partitions
    steering-assets backfill roles [--source-model M] [--partitions k1,k2] [--steering] [--judged]
    steering-assets classifier-dataset --strategy S --input DIR [--layers L] [--target-layer N --target-feature F] --output OUT
    steering-assets instance check | instance pools --gpu N
    steering-assets local-server postgres|redis start|stop
    steering-assets celery-workers [--gpus N] [--cpu-workers M]

Commands that touch the Dagster instance need DAGSTER_HOME (the Makefile sets it).
Resources come from PERSONA_DATA_ROOT, PERSONA_ARTIFACT_ROOT and PERSONA_MODEL, as in the UI.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from steering_assets.artifacts import ArtifactIntegrityError, ArtifactStore
from steering_assets.demo.stages import format_elapsed


def _instance(in_process: bool = False):
    """The instance in DAGSTER_HOME, its storage checked first (a Postgres error names the setting to fix).

    ``in_process``: runs launched through it execute in this process (steering_assets/launch.py).
    """
    import dagster as dg

    from steering_assets.deployment.instance import InstanceConfigError, check_instance_storage

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        sys.exit("DAGSTER_HOME is not set: point it at a folder holding dagster.yaml (the Makefile uses .dagster_home/)")
    try:
        check_instance_storage(home)
    except InstanceConfigError as err:
        sys.exit(f"error: {err}")
    if in_process:
        from steering_assets.launch import in_process_instance

        return in_process_instance(home)
    return dg.DagsterInstance.get()


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set; see .env.example for the settings the platform reads")
    return value


def summary_table(store: ArtifactStore, data_root: Path) -> list[tuple]:
    """One row per persona: dataset rows and the training split's rows and tokens."""
    from steering_assets.personas.layout import PERSONA_KINDS, discover_personas
    from steering_assets.personas.pipeline import dataset_folder, split_folder

    rows = []
    for kind in PERSONA_KINDS.values():
        for ref in discover_personas(data_root, kind).personas:
            try:
                dataset = store.load_manifest(dataset_folder(store, ref), verify=False)["details"]
                split = store.load_manifest(split_folder(store, ref), verify=False)["details"]
            except ArtifactIntegrityError:
                rows.append((kind.name, ref.partition_key, "-", "-", "-", "-", "not materialised"))
                continue
            rows.append(
                (
                    kind.name,
                    ref.partition_key,
                    dataset["rows"],
                    f"{split['train_rows']}/{split['validation_rows']}",
                    split["train_tokens"],
                    split["validation_tokens"],
                    "yes" if split["train_budget_reached"] else "NO (warned)",
                )
            )
    return rows


def print_summary(store: ArtifactStore, data_root: Path) -> None:
    headers = ["kind", "partition", "rows", "train/val rows", "train tokens", "val tokens", "budget reached"]
    _print_table(headers, [[str(v) for v in row] for row in summary_table(store, data_root)])


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    table = [headers] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for index, row in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


class Launcher:
    """Sends the CLI's work through Dagster's backfill machinery (steering_assets/launch.py).

    ``in_process``: this process executes the runs (the demo; the fallback where no daemon
    can run). Otherwise a running dagster-daemon executes them, or one started for the
    length of the command, so the runs obey the run queue and the pools.
    """

    def __init__(self, in_process: bool, timeout_s: float = 24 * 3600, log=print):
        self.in_process = in_process
        self.timeout_s = timeout_s
        self.log = log  # receives each progress line (the demo prefixes them with the elapsed time)
        self.backfill_ids: list[str] = []
        self.instance = _instance(in_process)
        self._stack = None

    def __enter__(self) -> "Launcher":
        import contextlib

        from steering_assets import launch

        self._stack = contextlib.ExitStack()
        self.context = self._stack.enter_context(launch.workspace_context(self.instance))
        if not self.in_process:
            # Not DAGSTER_HOME/logs: Dagster's telemetry moves that folder away (to .logs_queue), and with it
            # the workspace file the daemon re-reads every minute.
            log = Path(self.instance.root_directory) / "steering-assets" / "daemon.log"
            if self._stack.enter_context(launch.running_daemon(self.instance, log)):
                print(f"no dagster-daemon was running for {self.instance.root_directory}: started one for this command (log: {log})")
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def backfill(self, keys: list[list[str]], partitions: list[str] | None, *, title: str,
                 tags: dict | None = None, run_config: dict | None = None):
        """One asset backfill, run to its end; returns its BackfillOutcome."""
        import dagster as dg

        from steering_assets import launch
        from steering_assets.runner import QUIET_RUN_CONFIG

        backfill_id = launch.submit_asset_backfill(
            self.instance, self.context, [dg.AssetKey(k) for k in keys], partitions, title=title, tags=tags,
            run_config={**QUIET_RUN_CONFIG, **(run_config or {})},
        )
        self.backfill_ids.append(backfill_id)
        self.log(f"backfill {backfill_id} ({title}): {len(partitions) if partitions is not None else 'all'} partitions")
        if self.in_process:
            launch.run_backfill_in_process(self.context, backfill_id, progress=lambda line: self.log(f"  {line}"))
        else:
            launch.wait_for_backfill(self.instance, backfill_id, self.timeout_s, progress=lambda line: self.log(f"  {line}"))
        outcome = launch.backfill_outcome(self.instance, backfill_id)
        for partition, reason in sorted(outcome.errors.items()):
            self.log(f"  {partition}: FAILED: {reason}")
        return outcome

    def step_seconds(self, backfill_id: str) -> dict[str, float]:
        """Seconds each step (asset) of a backfill's runs took, summed over its runs, from Dagster's step stats."""
        from steering_assets import launch

        seconds: dict[str, float] = {}
        for record in launch.backfill_runs(self.instance, backfill_id):
            for stats in self.instance.get_run_step_stats(record.dagster_run.run_id):
                if stats.start_time is not None and stats.end_time is not None:
                    seconds[stats.step_key] = seconds.get(stats.step_key, 0.0) + stats.end_time - stats.start_time
        return seconds


def _failed_partitions(outcome) -> int:
    return len({key for keys in outcome.failed.values() for key in keys})


def _backfill_kind(launcher: Launcher, kind_name: str, keys: list[str], run_config: dict | None = None) -> int:
    from steering_assets.deployment.tags import cpu_run_tags

    outcome = launcher.backfill(
        [[kind_name, "persona_dataset"], [kind_name, "persona_training_split"]], keys,
        title=f"{kind_name} persona datasets", tags=cpu_run_tags(), run_config=run_config,
    )
    return _failed_partitions(outcome)


def _run_assets(launcher: Launcher, *keys: list[str]) -> bool:
    """Materialise unpartitioned assets (one run, through the same backfill machinery)."""
    outcome = launcher.backfill(list(keys), None, title=", ".join("/".join(k) for k in keys))
    return outcome.success


def _steering_stage(launcher: Launcher, kind_name: str, keys: list[str], run_config: dict | None = None) -> int:
    """Baselines and persona classifier, then vectors, activation vectors and evaluations in chunks, then the summary."""
    for prerequisite in (["roles", "baseline_dataset"], [kind_name, "persona_classifier"]):
        if not _run_assets(launcher, prerequisite):
            return len(keys)
    outcome = launcher.backfill(
        [[kind_name, "steering_vector"], [kind_name, "persona_activation_vector"], [kind_name, "steering_eval"]], keys,
        title=f"{kind_name} steering", run_config=run_config,
    )
    _run_assets(launcher, [kind_name, "steering_eval_summary"])
    return _failed_partitions(outcome)


def _judged_stage(launcher: Launcher, kind_name: str, keys: list[str], run_config: dict | None = None) -> int:
    """The judge-scored comparison of the trained vector, the activation vector, prompting and no steering."""
    outcome = launcher.backfill([[kind_name, "steering_judged_eval"]], keys, title=f"{kind_name} judged steering evaluation",
                                run_config=run_config)
    _run_assets(launcher, [kind_name, "steering_method_comparison"])
    return _failed_partitions(outcome)


def _kind_keys(instance, model_name: str, instructions_root: Path, log) -> dict[str, list[str]]:
    """Each kind's partitions of ``model_name`` that have an instruction file under ``instructions_root``.

    A partition whose file was deleted since it was added stays in the instance (its rollouts and
    artifacts remain); it is named through ``log`` and left out rather than failing the backfill.
    """
    from partitions.personas import PARTITIONS_BY_KIND
    from steering_assets.personas.instructions import discover_instructions
    from steering_assets.personas.layout import PERSONA_KINDS

    keys = {}
    for kind_name, partitions_def in PARTITIONS_BY_KIND.items():
        present = set(discover_instructions(instructions_root, PERSONA_KINDS[kind_name]))
        ours = [k for k in instance.get_dynamic_partitions(partitions_def.name) if k.startswith(f"{model_name}/")]
        gone = [k for k in ours if k.split("/", 1)[1] not in present]
        if gone:
            log(f"{kind_name}: left out {len(gone)} partition(s) whose instruction file is gone: {', '.join(gone)}")
        keys[kind_name] = [k for k in ours if k not in gone]
    return keys


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole graph on SmolLM2-135M-Instruct, offline: README "Quick start" says what it prints."""
    import warnings

    from partitions.concepts import sync_concept_partitions
    from partitions.personas import sync_instruction_partitions
    from partitions.scenarios import sync_scenario_partitions
    from steering_assets.demo import settings as demo
    from steering_assets.demo.build import DEMO_MODEL, write_demo_inputs
    from steering_assets.demo.instructions import DEMO_ROLES, DEMO_TRAITS
    from steering_assets.demo.stages import StageClock
    from steering_assets.personas.instructions import rollout_model_name

    _passive_openmp_waits()
    # Dagster's in-process run teardown leaves an asyncio coroutine unawaited; the warning it
    # prints after every run (three lines each) is noise that buries the stage lines.
    warnings.filterwarnings("ignore", message="coroutine 'BaseEventLoop.shutdown_asyncgens' was never awaited",
                            category=RuntimeWarning)
    clock = StageClock(lambda line: print(line, flush=True), started=args.started_at)
    from steering_assets.runner import PROGRESS_SINK

    # The runs execute in this process: their assets' progress lines join the stage lines.
    PROGRESS_SINK.write = clock.progress
    if args.started_at is not None:
        # The Makefile passes the time it started: what came before this process is the install.
        clock.record("install (make install) and start-up", clock.elapsed(), start_s=0.0)
    workspace = write_demo_inputs(args.workspace)
    clock.line(f"demo workspace: {workspace.root} (instruction files for {len(DEMO_ROLES)} roles and {len(DEMO_TRAITS)} "
               f"traits, scenarios); persona model and judge: {DEMO_MODEL}")
    # The code location reads its resources from the environment: point it at the demo workspace.
    os.environ.update(workspace.settings())
    failed = 0
    # Every stage is a Dagster backfill of the code location (UI: Overview -> Backfills, the
    # asset pages and the run timeline), executed in this process: see steering_assets/launch.py.
    with contextlib.ExitStack() as stack:
        with clock.stage("Dagster instance"):
            launcher = stack.enter_context(Launcher(in_process=True, log=clock.progress))
            instance = launcher.instance
        with _backfill_stage(clock, launcher, "persona model (GGUF converted once per machine, then described)"):
            if not _run_assets(launcher, ["models", "persona_model"]):
                return 1
        from resources.language_model import ModelSource

        model_name = rollout_model_name(ModelSource(model_name_or_path=DEMO_MODEL).display_name)
        sync_instruction_partitions(instance, workspace.instructions_root, model_name)
        keys = _kind_keys(instance, model_name, workspace.instructions_root, clock.line)
        for kind_name, kind_keys in keys.items():
            with _backfill_stage(clock, launcher, f"{kind_name} rollouts: generated and judged (backfill)"):
                outcome = launcher.backfill([[kind_name, "generated_rollouts"], [kind_name, "rollout_scores"]], kind_keys,
                                            title=f"{kind_name} rollouts", run_config=demo.generation_run_config(kind_name))
                failed += _failed_partitions(outcome)
        roles = [k for k in keys["roles"] if not k.endswith("/default")]
        with clock.stage("judge agreement (role replies against default replies, AUROC)"):
            agreement = _demo_judge_agreement(workspace, model_name, [k.split("/", 1)[1] for k in roles])
        persona_keys = {"roles": roles, "traits": keys["traits"]}
        for kind_name, kind_keys in persona_keys.items():
            with _backfill_stage(clock, launcher, f"{kind_name} datasets (backfill)"):
                failed += _backfill_kind(launcher, kind_name, kind_keys, demo.dataset_run_config(kind_name))
            with _backfill_stage(clock, launcher, f"{kind_name} steering (backfill)"):
                failed += _steering_stage(launcher, kind_name, kind_keys, demo.steering_run_config(kind_name))
        with _backfill_stage(clock, launcher, "roles judged steering evaluation (backfill)"):
            failed += _judged_stage(launcher, "roles", roles, demo.judged_run_config("roles"))
        with clock.stage("concept sentences (the traits' scored replies) and SAEs (SmolLM2's residual stream)"):
            _demo_feature_inputs(workspace, model_name, [k.split("/", 1)[1] for k in keys["traits"]], clock.progress)
            sync_concept_partitions(instance, workspace.concepts_root)
            concepts = instance.get_dynamic_partitions("concepts")
        with _backfill_stage(clock, launcher, "concept features (backfill)"):
            feature_assets = [list(k.path) for k in _job_assets(launcher, "concept_features")]
            failed += _failed_partitions(launcher.backfill(feature_assets, concepts, title="concept features",
                                                           run_config=demo.feature_run_config()))
        sync_scenario_partitions(instance, workspace.scenarios_root)
        traits = instance.get_dynamic_partitions("scenario_traits")
        with _backfill_stage(clock, launcher, "vetting (backfill)"):
            # A vetting run succeeds when items fail: failing items are what the checks and the report show.
            vetting_assets = [list(k.path) for k in _job_assets(launcher, "vetting")]
            failed += _failed_partitions(launcher.backfill(vetting_assets, traits, title="vetting"))
    with clock.stage("summaries"):
        _print_demo_summaries(workspace, agreement, concepts, traits)
    print("\nProfile (wall and CPU seconds per stage; CPU counts both cores, so it can exceed wall)")
    _print_table(["stage", "wall s", "CPU s", "share", "note"], clock.profile_rows())
    print(
        f"\nDone in {format_elapsed(clock.elapsed())}. Where to look:\n"
        f"  artifacts:     {workspace.artifact_root}\n"
        f"  rollouts:      {workspace.data_root} (generated by {DEMO_MODEL}, with the judge's scores)\n"
        f"  instructions:  {workspace.instructions_root} (add a role file, then re-run: only it is generated)\n"
        f"  scenarios:     {workspace.scenarios_root} (fix a failing line, then re-run or let the automation re-vet it)\n"
        f"  Dagster UI:    make ui, then open http://127.0.0.1:3000 (asset lineage, metadata, checks, runs)"
    )
    return 1 if failed else 0


def _demo_judge(workspace):
    """The likelihood judge the code location's resource builds, with the same judgment cache."""
    from resources.judge import JudgeResource
    from steering_assets.demo.build import DEMO_MODEL

    return JudgeResource(backend="likelihood", local_model=DEMO_MODEL).judge(ArtifactStore(workspace.artifact_root).folder("judgments"))


def _demo_judge_agreement(workspace, model_name: str, roles: list[str]):
    from steering_assets.demo.report import role_judge_agreement

    return role_judge_agreement(_demo_judge(workspace), workspace.data_root, workspace.instructions_root, model_name,
                                model_name, roles)


def _demo_feature_inputs(workspace, model_name: str, traits: list[str], log) -> None:
    from steering_assets.demo.build import DEMO_MODEL
    from steering_assets.demo.features import train_demo_saes, write_demo_concepts
    from steering_assets.pretrained import resolve_model

    counts = write_demo_concepts(workspace.data_root, model_name, workspace.concepts_root, traits, log=log)
    for trait, by_label in counts.items():
        log(f"concept {trait}: sentences per label 0-3: {' / '.join(str(by_label[label]) for label in range(4))}")
    judge = _demo_judge(workspace)  # the same weights, already loaded: the SAEs read its residual stream
    train_demo_saes(judge.model, judge.tokenizer, Path(resolve_model(DEMO_MODEL)), workspace.data_root,
                    workspace.sae_config.parent, log=log)


def _print_demo_summaries(workspace, agreement, concepts: list[str], traits: list[str]) -> None:
    from steering_assets.demo.report import CONCEPT_MARGIN, FLUENCY_FLOOR, steered_samples, vector_effects
    from steering_assets.personas.layout import ROLES, discover_personas

    store = ArtifactStore(workspace.artifact_root)
    print("\nThe offline judge (SmolLM2's likelihood ratios, vetting/likelihood.py) on labels known by construction: "
          "each role's replies against the default assistant's, both rated for the role (0-100)")
    _print_table(["role", "AUROC", "role replies (mean)", "default replies (mean)"],
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
        _print_table(["persona", "vector (factor)", "concept above random", "fluency", "effect"],
                     [[e.persona, f"{e.method} (x{e.factor:g})", f"{e.concept_gain:+.2f}", f"{e.fluency:.2f}",
                       "yes" if e.holds else "no"] for e in effects])
        print(f"a vector raises the judged concept over the random direction by >= {CONCEPT_MARGIN} (of 2) with fluency "
              f">= {FLUENCY_FLOOR} for {sum(e.holds for e in effects)} of {len(effects)} roles")
    print("\nSteered samples (the best vector method at its chosen factor, and the unsteered reply to the same instruction)")
    for sample in steered_samples(store, refs):
        print(f"  {sample['persona']} | {sample['instruction']}\n    {sample['method']}: {sample['steered']}\n"
              f"    unsteered: {sample['unsteered']}")
    print("\nConcept classifiers (cross-validated, best model per dataset; labels: the judge's trait scores)")
    print_concept_classifiers(store, concepts)
    print("\nVetting (the likelihood judge; pass: positive >= 60, negative <= 40)")
    print_vetting(store, workspace.scenarios_root, traits)
    print()


def _passive_openmp_waits() -> None:
    """OMP_WAIT_POLICY=PASSIVE for this process and its children, unless the environment sets it.

    torch's OpenMP threads spin while they wait for work. Alone on the machine that is fast;
    with any other busy process on 2 cores, a spinning thread burns the time slice its partner
    needs: steering training on SmolLM2 beside one busy process ran 1.5 times slower (benchmarks/omp_wait_policy.py).
    Passive threads sleep instead. It must be set before torch loads its OpenMP runtime.
    """
    if "torch" in sys.modules:
        print("note: torch was imported before the demo set OMP_WAIT_POLICY; its threads keep spinning", flush=True)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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


def print_concept_classifiers(store: ArtifactStore, concepts: list[str]) -> None:
    rows = []
    for concept in concepts:
        try:
            details = store.load_manifest(store.folder("concepts", "trait_classifiers", concept), verify=False)["details"]
        except ArtifactIntegrityError:
            continue
        for dataset, best in sorted(details["best"].items()):
            rows.append([concept, dataset, best["model"], f"{best['score']:.3f}"])
    if rows:
        _print_table(["concept", "dataset", "best model", "score (ROC-AUC, else accuracy; R2 for features)"], rows)
    else:
        print("(no concept classifiers)")


def _clip(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def print_vetting(store: ArtifactStore, scenarios_root: Path, traits: list[str], completion_verdicts: dict | None = None,
                  completions_shown: int = 3) -> None:
    """Pass rates per stage, every failing scenario, a few failing completions, and the judge calibration table
    (agreement with the known verdicts of ``verdicts.jsonl`` and, for completions, ``completion_verdicts``; the share
    of ambiguous scores; the drift since the previous vetting)."""
    import json

    from steering_assets.vetting.calibration import calibrate, calibration_row, read_calibration
    from steering_assets.vetting.pipeline import RESPONSES_FILE, STAGES, pass_rate, read_report, trait_folder
    from steering_assets.vetting.scenarios import Thresholds, read_trait_scenarios, read_verdicts

    rates, scenario_rows, completion_rows, calibration_rows, judges = [], [], [], [], set()
    for key in traits:
        folder = trait_folder(scenarios_root, key)
        scenarios = read_trait_scenarios(folder)
        verdicts = read_verdicts(folder, scenarios) + list((completion_verdicts or {}).get(key, []))
        row = [key]
        for stage in STAGES:
            report = read_report(store, stage, scenarios.category, scenarios.trait)
            if report is None:
                row.append("-")
                continue
            row.append(f"{pass_rate(report):.0%}")
            thresholds = Thresholds(**report["thresholds"])
            judges.add(report["judge_model"])
            stored = read_calibration(store.folder("vetting", stage, scenarios.category, scenarios.trait))
            calibration = calibration_row(calibrate(report["judge_model"], STAGES[stage], report, verdicts, thresholds, stored))
            calibration_rows.append([key, f"{STAGES[stage]}s", calibration["agreement"], calibration["ambiguous"],
                                     calibration["drift"]])
            scores = {(r["polarity"], r["idx"]): r["score"] for r in report["results"]}
            failed = [(side, i) for side in ("positive", "negative") for i in report["failed_indices"][side]]
            if stage == "scenario_vetting":
                for side, i in failed:
                    score = scores.get((side, i))
                    scenario_rows.append([key, f"{side[:3]} {i}", "error" if score is None else f"{score:.0f}",
                                          thresholds.requirement(side), _clip(scenarios.side(side)[i].prompt)])
            else:
                responses = json.loads((store.folder("vetting", "scenario_responses", scenarios.category, scenarios.trait)
                                        / RESPONSES_FILE).read_text(encoding="utf-8"))
                for side, i in failed[:completions_shown]:
                    score = scores.get((side, i))
                    completion_rows.append([key, f"{side[:3]} {i}", "error" if score is None else f"{score:.0f}",
                                            thresholds.requirement(side), _clip(responses[side][i]) or "(empty)"])
                if len(failed) > completions_shown:
                    completion_rows.append([key, f"+{len(failed) - completions_shown} more", "", "",
                                            str(store.folder("vetting", stage, scenarios.category, scenarios.trait))])
        rates.append(row)
    _print_table(["trait", "scenarios pass", "completions pass"], rates)
    if scenario_rows:
        print("\nScenarios that fail (fix these lines in the scenario files):")
        _print_table(["trait", "item", "score", "needs", "scenario"], scenario_rows)
    if completion_rows:
        print("\nCompletions that fail (the base model did not write the trait, or its opposite, as the scenario asked):")
        _print_table(["trait", "item", "score", "needs", "completion"], completion_rows)
    if calibration_rows:
        print(f"\nJudge calibration ({', '.join(sorted(judges))}): agreement with the known verdicts, share of scores "
              "between the thresholds, change since the previous vetting of the same items")
        _print_table(["trait", "stage", "agreement", "ambiguous", "drift"], calibration_rows)


def print_evaluations(store: ArtifactStore, data_root: Path) -> None:
    from steering_assets.personas.layout import PERSONA_KINDS, discover_personas
    from steering_assets.steering.eval_pipeline import evaluation_table

    refs = [ref for kind in PERSONA_KINDS.values() for ref in discover_personas(data_root, kind).personas]
    rows = evaluation_table(store, refs)
    if not rows:
        print("(no evaluations)")
        return
    _print_table(list(rows[0]), [[str(v) for v in row.values()] for row in rows])
    roles = [r for r in rows if r["persona"] in {ref.partition_key for ref in refs if ref.kind.name == "roles"}]
    print(f"steering effect (p >= 0.5, >= 2x unsteered and >= 2x a random direction of the same norm) for "
          f"{sum(r['effect'] == 'yes' for r in roles)} of {len(roles)} roles")


def print_method_comparison(store: ArtifactStore, data_root: Path) -> None:
    """Per persona: each method's reported harmonic mean (chosen factors in brackets), the winner, and wins per method."""
    from steering_assets.personas.layout import PERSONA_KINDS, discover_personas
    from steering_assets.steering.judged_eval import METHODS, comparison_table

    refs = [ref for kind in PERSONA_KINDS.values() for ref in discover_personas(data_root, kind).personas]
    rows, wins = comparison_table(store, refs)
    if not rows:
        print("(no judged evaluations)")
        return

    def cell(row, method, factor_key=None):
        factor = row.get(factor_key) if factor_key else None
        return f"{row[method]}" + (f" (x{factor:g})" if factor is not None else "")

    def above(row, method):
        value = row.get("concept above random", {}).get(method)
        return "n/a" if value is None else f"{value:+.2f}"

    _print_table(["persona", "trained (factor)", "activation (factor)", "random (factor)", "prompted", "unsteered", "best",
                  "concept above random: trained / activation", "|trained| / residual norm"],
                 [[row["persona"], cell(row, "trained", "trained factor"), cell(row, "activation", "activation factor"),
                   cell(row, "random", "random factor"), cell(row, "prompted"), cell(row, "unsteered"), row["best"],
                   f"{above(row, 'trained')} / {above(row, 'activation')}", str(row["|trained| / residual"])] for row in rows])
    print("personas won: " + ", ".join(f"{method} {wins[method]}" for method in METHODS))


def cmd_sync(args: argparse.Namespace) -> int:
    from partitions.personas import sync_partitions

    scan = sync_partitions(_instance(), _env("PERSONA_DATA_ROOT"))
    for kind_name, keys in scan.new_keys.items():
        print(f"{kind_name}: {len(keys)} new partitions" + (f" ({', '.join(keys[:5])}{', …' if len(keys) > 5 else ''})" if keys else ""))
    for kind_name, counts in scan.layouts.items():
        if counts:
            print(f"{kind_name} files by layout: " + ", ".join(f"{layout} {n}" for layout, n in sorted(counts.items())))
    print(f"data versions recorded: {len(scan.observations)}")
    for line in scan.rejected:
        print(f"skipped (not a partition): {line}", file=sys.stderr)
    if scan.problem:
        print(f"error: {scan.problem}", file=sys.stderr)
        return 1
    return 0


def _job_assets(launcher: Launcher, job_name: str) -> list:
    """The asset keys a job of the code location materialises."""
    from steering_assets.definitions import defs

    return sorted(defs.resolve_job_def(job_name).asset_layer.executable_asset_keys, key=str)


def cmd_backfill(args: argparse.Namespace) -> int:
    from partitions.personas import PARTITIONS_BY_KIND, sync_partitions

    data_root = _env("PERSONA_DATA_ROOT")
    instance = _instance()
    sync_partitions(instance, data_root)
    keys = instance.get_dynamic_partitions(PARTITIONS_BY_KIND[args.kind].name)
    if args.source_model:
        keys = [k for k in keys if k.startswith(f"{args.source_model}/")]
    if args.partitions:
        wanted = [k.strip() for k in args.partitions.split(",") if k.strip()]
        unknown = sorted(set(wanted) - set(keys))
        if unknown:
            sys.exit(f"unknown {args.kind} partitions: {', '.join(unknown)}")
        keys = wanted
    if not keys:
        sys.exit(f"no {args.kind} partitions to backfill under {data_root}")
    with Launcher(in_process=args.in_process) as launcher:
        failed = _backfill_kind(launcher, args.kind, keys)
        print(f"{len(keys) - failed} of {len(keys)} {args.kind} partitions materialised")
        if args.steering:
            steering_failed = _steering_stage(launcher, args.kind, keys)
            print(f"{len(keys) - steering_failed} of {len(keys)} {args.kind} steering vectors trained and evaluated")
            failed += steering_failed
        if args.judged:
            judged_failed = _judged_stage(launcher, args.kind, keys)
            print(f"{len(keys) - judged_failed} of {len(keys)} {args.kind} personas judged (trained vs activation vs prompted)")
            print_method_comparison(ArtifactStore(_env("PERSONA_ARTIFACT_ROOT")), data_root)
            failed += judged_failed
    return 1 if failed else 0


def cmd_classifier_dataset(args: argparse.Namespace) -> int:
    """The dataset generator researchers know, over a folder of feature NPZs; same code as the asset."""
    from steering_assets.features.datasets import (
        DatasetSpec,
        DatasetSpecError,
        build_classifier_dataset,
        hidden_state_layer_ids,
        save_dataset,
    )
    from steering_assets.features.layers import LayerSpecError
    from steering_assets.features.prefixes import SentenceFeatures
    from steering_assets.artifacts import atomic_path

    folder = Path(args.input)
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not files:
        sys.exit(f"{folder}: no feature NPZs (expected the sentence_features folder of a concept, or the "
                 "sentence_*.npz folder of the original s1 writer)")
    try:
        features = []
        for path in files:
            try:
                feature = SentenceFeatures.load(path)
            except (ValueError, KeyError) as err:
                raise DatasetSpecError(f"{path}: not a feature NPZ ({err})") from None
            hidden_state_layer_ids(feature, where=str(path))  # rows and layer ids agree, named by file
            features.append(feature)
        spec = DatasetSpec(args.strategy, args.layers, args.target_layer, args.target_feature, args.normalize)
        arrays = build_classifier_dataset(features, spec)
    except (DatasetSpecError, LayerSpecError) as err:
        sys.exit(f"error: {err}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        save_dataset(arrays, tmp)
    print(f"{output}: X {arrays['X'].shape}, y {arrays['y'].shape}, strategy {args.strategy}, normalize {args.normalize}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="steering-assets", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build the offline demo workspace and materialise every asset")
    demo.add_argument("--workspace", default=".demo", help="demo folder (default .demo)")
    demo.add_argument("--started-at", type=float, metavar="EPOCH_SECONDS",
                      help="when the command that runs the demo started (the Makefile passes its start), so that "
                           "the profile counts the install before it")
    demo.set_defaults(func=cmd_demo)
    sync = sub.add_parser("sync-partitions", help="add partitions for every persona under PERSONA_DATA_ROOT")
    sync.set_defaults(func=cmd_sync)
    backfill = sub.add_parser("backfill", help="materialise a persona job for all (or some) partitions")
    backfill.add_argument("kind", choices=["roles", "traits"])
    backfill.add_argument("--source-model", help="only this source model's partitions")
    backfill.add_argument("--partitions", help="comma-separated partition keys (default: all)")
    backfill.add_argument("--steering", action="store_true", help="also train and evaluate steering vectors (needs the model)")
    backfill.add_argument("--judged", action="store_true",
                          help="also the judge-scored comparison: trained vs activation vector vs prompting (needs the judge)")
    backfill.add_argument("--in-process", action="store_true",
                          help="execute the runs in this process instead of through a dagster-daemon (no run queue)")
    backfill.set_defaults(func=cmd_backfill)
    dataset = sub.add_parser("classifier-dataset", help="build one classifier dataset NPZ from feature NPZs")
    dataset.add_argument("--strategy", required=True, choices=["embedding-to-feature", "hidden-to-feature", "hidden-to-concept", "embedding-to-concept"])
    dataset.add_argument("--input", required=True, help="folder of sentence feature NPZs")
    dataset.add_argument("--layers", "--layer", "--input-layer", dest="layers",
                         help="hidden-* strategies: layer ids, e.g. '6' or '0-2,10,15-17' (looked up in the NPZs' "
                              "layer ids; hidden-to-feature defaults to the target layer)")
    dataset.add_argument("--target-layer", type=int, help="*-to-feature strategies: SAE layer id")
    dataset.add_argument("--target-feature", type=int, help="*-to-feature strategies: SAE feature index")
    dataset.add_argument("--normalize", default="standardize", choices=["standardize", "minmax", "none"])
    dataset.add_argument("--output", required=True, help="NPZ to write")
    dataset.set_defaults(func=cmd_classifier_dataset)
    from steering_assets.deployment.commands import add_parsers

    add_parsers(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
