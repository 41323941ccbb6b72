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


def _backfill_kind(launcher: Launcher, kind_name: str, keys: list[str]) -> int:
    from steering_assets.deployment.tags import cpu_run_tags

    outcome = launcher.backfill(
        [[kind_name, "persona_dataset"], [kind_name, "persona_training_split"]], keys,
        title=f"{kind_name} persona datasets", tags=cpu_run_tags(),
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


def _use_workspace_settings(workspace) -> None:
    """The code location reads its resources from the environment: point it at the demo workspace."""
    os.environ.update({
        "PERSONA_DATA_ROOT": str(workspace.data_root),
        "PERSONA_ARTIFACT_ROOT": str(workspace.artifact_root),
        "PERSONA_MODEL": str(workspace.model_path),
        "PERSONA_CONCEPTS_ROOT": str(workspace.concepts_root),
        "PERSONA_SAE_CONFIG": str(workspace.sae_config),
        "PERSONA_SCENARIOS_ROOT": str(workspace.scenarios_root),
        "PERSONA_JUDGE_BACKEND": "local",
        "PERSONA_JUDGE_LOCAL_MODEL": str(workspace.judge_path),
        # Steered generations are rated by a judge of their own (steering_assets/demo/steering_judge.py).
        "PERSONA_STEERING_JUDGE_LOCAL_MODEL": str(workspace.steering_judge_path),
    })


def cmd_demo(args: argparse.Namespace) -> int:
    from partitions.concepts import sync_concept_partitions
    from partitions.personas import PARTITIONS_BY_KIND, sync_partitions
    from partitions.scenarios import sync_scenario_partitions
    from steering_assets.demo.build import start_demo_build
    from steering_assets.demo.corpus import SOURCE_MODEL
    from steering_assets.demo.settings import judged_run_config, steering_run_config
    from steering_assets.demo.stages import StageClock

    import warnings

    _passive_openmp_waits()
    # Dagster's in-process run teardown leaves an asyncio coroutine unawaited; the warning it
    # prints after every run (three lines each) is noise that buries the stage lines.
    warnings.filterwarnings("ignore", message="coroutine 'BaseEventLoop.shutdown_asyncgens' was never awaited",
                            category=RuntimeWarning)
    clock = StageClock(lambda line: print(line, flush=True), started=args.started_at)
    if args.started_at is not None:
        # The Makefile passes the time it started: what came before this process is the install.
        clock.record("install (make install) and start-up", clock.elapsed(), start_s=0.0)
    clock.line("building the demo workspace (cached after the first run; the first build trains the demo model, "
               "the SAEs and, each in a second process beside the rest, the vetting judge and the steering judge)")
    build = start_demo_build(args.workspace, force=args.rebuild, clock=clock, judge_in_background=True)
    workspace = build.workspace
    clock.line(f"demo workspace {'built' if build.built else 'reused (cached)'}: {workspace.root}"
               + ("" if build.judge_ready() else " (the demo judge is still training)"))
    _use_workspace_settings(workspace)
    failed = 0
    # Every stage is a Dagster backfill of the code location (UI: Overview -> Backfills, the
    # asset pages and the run timeline), executed in this process: see steering_assets/launch.py.
    with contextlib.ExitStack() as stack:
        with clock.stage("Dagster instance and partitions"):
            launcher = stack.enter_context(Launcher(in_process=True, log=clock.progress))
            instance = launcher.instance
            scan = sync_partitions(instance, workspace.data_root)
            clock.progress(f"partitions added: {', '.join(f'{k}={len(v)}' for k, v in scan.new_keys.items())}")
            sync_concept_partitions(instance, workspace.concepts_root)
            concepts = instance.get_dynamic_partitions("concepts")
        with _backfill_stage(clock, launcher, "concept features (backfill)"):
            feature_assets = [list(k.path) for k in _job_assets(launcher, "concept_features")]
            failed += _failed_partitions(launcher.backfill(feature_assets, concepts, title="concept features"))
        for kind_name, partitions_def in PARTITIONS_BY_KIND.items():
            keys = [k for k in instance.get_dynamic_partitions(partitions_def.name) if k.startswith(f"{SOURCE_MODEL}/")]
            with _backfill_stage(clock, launcher, f"{kind_name} datasets (backfill)"):
                failed += _backfill_kind(launcher, kind_name, keys)
            with _backfill_stage(clock, launcher, f"{kind_name} steering (backfill)"):
                failed += _steering_stage(launcher, kind_name, keys, steering_run_config(kind_name))
        # Vetting comes last: it needs the demo judge, which trains beside everything above.
        build.wait_for_judge(clock)  # raises here if its training failed
        sync_scenario_partitions(instance, workspace.scenarios_root)
        traits = instance.get_dynamic_partitions("scenario_traits")
        with _backfill_stage(clock, launcher, "vetting (backfill)"):
            # A vetting run succeeds when items fail: failing items are what the checks and the report show.
            vetting_assets = [list(k.path) for k in _job_assets(launcher, "vetting")]
            failed += _failed_partitions(launcher.backfill(vetting_assets, traits, title="vetting"))
        # The judge-scored comparison needs the steering judge, trained beside the stages above.
        build.wait_for_steering_judge(clock)
        for kind_name, partitions_def in PARTITIONS_BY_KIND.items():
            keys = [k for k in instance.get_dynamic_partitions(partitions_def.name) if k.startswith(f"{SOURCE_MODEL}/")]
            with _backfill_stage(clock, launcher, f"{kind_name} judged steering evaluation (backfill)"):
                failed += _judged_stage(launcher, kind_name, keys, judged_run_config(kind_name))
    with clock.stage("summaries"):
        store = ArtifactStore(workspace.artifact_root)
        print("\nPersona datasets")
        print_summary(store, workspace.data_root)
        print("\nSteering vectors (persona-classifier probability of the target persona on generations from neutral prompts)")
        print_evaluations(store, workspace.data_root)
        print("\nSteering methods compared by the demo steering judge (harmonic mean of concept, instruction and "
              "fluency, 0-2, on the report half; the factor, in typical residual norms, chosen on the other half)")
        print_method_comparison(store, workspace.data_root)
        print("\nDemo steering judge against the known ratings of the same generations (demo/steering_judge.py)")
        print_steering_judge_agreement(store, workspace.data_root)
        print("\nConcept classifiers (cross-validated, best model per dataset)")
        print_concept_classifiers(store, concepts)
        print("\nVetting (demo judge; pass: positive >= 60, negative <= 40)")
        from steering_assets.demo.vetting import response_verdicts

        print_vetting(store, workspace.scenarios_root, traits, response_verdicts(store, workspace.scenarios_root, traits))
        print()
    print("\nProfile (wall and CPU seconds per stage; CPU counts both cores, so it can exceed wall)")
    _print_table(["stage", "wall s", "CPU s", "share", "note"], clock.profile_rows())
    print(
        f"\nDone in {format_elapsed(clock.elapsed())}. Where to look:\n"
        f"  artifacts:   {workspace.artifact_root}\n"
        f"  raw data:    {workspace.data_root}\n"
        f"  demo model:  {workspace.model_path}\n"
        f"  scenarios:   {workspace.scenarios_root} (fix a failing line, then re-run or let the automation re-vet it)\n"
        f"  Dagster UI:  make ui, then open http://127.0.0.1:3000 (asset lineage, metadata, checks, runs)"
    )
    return 1 if failed else 0


def _passive_openmp_waits() -> None:
    """OMP_WAIT_POLICY=PASSIVE for this process and its children, unless the environment sets it.

    torch's OpenMP threads spin while they wait for work. Alone on the machine that is fast;
    with any other busy process on 2 cores, a spinning thread burns the time slice its partner
    needs, and the demo model's training ran 4 to 14 times slower (benchmarks/omp_wait_policy.py).
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


def print_steering_judge_agreement(store: ArtifactStore, data_root: Path) -> None:
    """The demo steering judge's ratings of every judged generation against the demo's known ratings:
    per criterion, the share that agree (rounded), the mean absolute error and both means; both
    means per method; then, per persona, the method the judge's table picks against the one the
    known ratings pick on the same generations (``known_method_scores``)."""
    from steering_assets.demo.steering_judge import known_method_scores, recorded_agreement
    from steering_assets.personas.layout import PERSONA_KINDS, discover_personas
    from steering_assets.steering.judged_eval import METHODS, judged_eval_folder, read_generations

    by_method: dict[str, list] = {method: [] for method in METHODS}
    missing, decisions = [], []
    for kind in PERSONA_KINDS.values():
        for ref in discover_personas(data_root, kind).personas:
            try:
                records = read_generations(store, ref)
            except ArtifactIntegrityError:
                missing.append(ref.partition_key)
                continue
            for row in records:
                by_method.setdefault(row["method"], []).append((ref.name, row["instruction"], row["reply"], row["ratings"]))
            details = store.load_manifest(judged_eval_folder(store, ref), verify=False)["details"]
            chosen = {row["method"]: row.get("factor") for row in details["table"] if row.get("harmonic_mean") is not None}
            known = known_method_scores(ref.name, records, chosen)
            top = max(known.values(), default=None)
            best_known = [m for m in METHODS if m in known and round(known[m], 2) == round(top, 2)]
            decisions.append((ref.partition_key, details.get("winner") or "n/a", best_known, known))
    everything = [item for items in by_method.values() for item in items]
    if not everything:
        print("(no judged generations)")
        return
    overall = recorded_agreement(everything)
    _print_table(["criterion", "agreement", "mean abs. error", "judge mean", "known mean", "rated"],
                 [[criterion, f"{v['agree']:.2f}", f"{v['mae']:.2f}", f"{v['judge']:.2f}", f"{v['known']:.2f}",
                   f"{v['rated']}/{v['items']}"] for criterion, v in overall.items()])
    rows = []
    for method, items in by_method.items():
        if items:
            values = recorded_agreement(items)
            rows.append([method, *(f"{values[c]['judge']:.2f} / {values[c]['known']:.2f}" for c in values)])
    _print_table(["method (all factors)", "concept judge / known", "instruction judge / known", "fluency judge / known"], rows)
    _print_table(["persona", "best by the judge", "best by the known ratings (= a tie)", f"known: {' / '.join(METHODS)}"],
                 [[persona, judge_best, " = ".join(best_known) or "n/a",
                   " / ".join(f"{known[m]:.2f}" if m in known else "n/a" for m in METHODS)]
                  for persona, judge_best, best_known, known in decisions])
    same = sum(judge_best in best_known for _, judge_best, best_known, _ in decisions)
    print(f"the judge picks a best method of the known ratings for {same} of {len(decisions)} personas")
    if missing:
        print(f"no judged evaluation (left out): {', '.join(missing)}")


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
    demo.add_argument("--rebuild", action="store_true", help="rebuild the demo data and model even if cached")
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
