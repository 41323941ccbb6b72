"""Launching the CLI's work as Dagster backfills of the code location, and the stages built from them.

``Launcher`` submits asset backfills through Dagster's own machinery (``cli/launch.py``), so the
runs belong to the code location and obey the run queue and the pools; the stage functions
(``backfill_persona_datasets``, ``steering_stage``, ``judged_stage``) are what ``steering-assets
backfill`` and the demo run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def instance_from_home(in_process: bool = False):
    """The instance in DAGSTER_HOME, its storage checked first (a Postgres error names the setting to fix).

    ``in_process``: runs launched through it execute in this process (steering_assets/cli/launch.py).
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
        from steering_assets.cli.launch import in_process_instance

        return in_process_instance(home)
    return dg.DagsterInstance.get()


class Launcher:
    """Sends the CLI's work through Dagster's backfill machinery (steering_assets/cli/launch.py).

    ``in_process``: this process executes the runs (the demo; the fallback where no daemon
    can run). Otherwise a running dagster-daemon executes them, or one started for the
    length of the command, so the runs obey the run queue and the pools.
    ``target``: the code location's Definitions (default: workspace.yaml's, which reads the
    settings from the environment); a program holding its own ``Settings`` names a module whose
    ``dagster.definitions`` function builds them (in-process runs only: a daemon imports by name).
    """

    def __init__(self, in_process: bool, timeout_s: float = 24 * 3600, log=print, target=None):
        from steering_assets.cli.launch import CodeLocationTarget

        self.target = target or CodeLocationTarget()
        if not in_process and self.target != CodeLocationTarget():
            raise ValueError("a code location other than workspace.yaml's runs in process only (in_process=True)")
        self.in_process = in_process
        self.timeout_s = timeout_s
        self.log = log  # receives each progress line (the demo prefixes them with the elapsed time)
        self.backfill_ids: list[str] = []
        self.instance = instance_from_home(in_process)
        self._stack = None

    def __enter__(self) -> "Launcher":
        import contextlib

        from steering_assets.cli import launch

        self._stack = contextlib.ExitStack()
        self.context = self._stack.enter_context(launch.workspace_context(self.instance, target=self.target))
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

        from steering_assets.cli import launch
        from steering_assets.core.progress import QUIET_RUN_CONFIG

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
        from steering_assets.cli import launch

        seconds: dict[str, float] = {}
        for record in launch.backfill_runs(self.instance, backfill_id):
            for stats in self.instance.get_run_step_stats(record.dagster_run.run_id):
                if stats.start_time is not None and stats.end_time is not None:
                    seconds[stats.step_key] = seconds.get(stats.step_key, 0.0) + stats.end_time - stats.start_time
        return seconds


def failed_partitions(outcome) -> int:
    return len({key for keys in outcome.failed.values() for key in keys})


def backfill_persona_datasets(launcher: Launcher, kind_name: str, keys: list[str], run_config: dict | None = None) -> int:
    """The kind's persona-dataset job (its assets as the definitions select them) over ``keys``, on CPU workers."""
    from steering_assets.deployment.tags import cpu_run_tags
    from steering_assets.personas.jobs import persona_job_name

    outcome = launcher.backfill(
        [list(k.path) for k in job_assets(launcher, persona_job_name(kind_name))], keys,
        title=f"{kind_name} persona datasets", tags=cpu_run_tags(), run_config=run_config,
    )
    return failed_partitions(outcome)


def run_assets(launcher: Launcher, *keys: list[str]) -> bool:
    """Materialise unpartitioned assets (one run, through the same backfill machinery)."""
    outcome = launcher.backfill(list(keys), None, title=", ".join("/".join(k) for k in keys))
    return outcome.success


def steering_stage(launcher: Launcher, kind_name: str, keys: list[str], run_config: dict | None = None) -> int:
    """Baselines and persona classifier, then vectors, activation vectors and evaluations in chunks, then the summary."""
    for prerequisite in (["roles", "baseline_dataset"], [kind_name, "persona_classifier"]):
        if not run_assets(launcher, prerequisite):
            return len(keys)
    from steering_assets.steering.jobs import steering_job_name

    outcome = launcher.backfill([list(k.path) for k in job_assets(launcher, steering_job_name(kind_name))], keys,
                                title=f"{kind_name} steering", run_config=run_config)
    run_assets(launcher, [kind_name, "steering_eval_summary"])
    return failed_partitions(outcome)


def judged_stage(launcher: Launcher, kind_name: str, keys: list[str], run_config: dict | None = None) -> int:
    """The judge-scored comparison of the trained vector, the activation vector, prompting and no steering."""
    outcome = launcher.backfill([[kind_name, "steering_judged_eval"]], keys, title=f"{kind_name} judged steering evaluation",
                                run_config=run_config)
    run_assets(launcher, [kind_name, "steering_method_comparison"])
    return failed_partitions(outcome)


def job_assets(launcher: Launcher, job_name: str) -> list:
    """The asset keys a job of the launcher's code location materialises."""
    import importlib

    import dagster as dg

    definitions = getattr(importlib.import_module(launcher.target.module), launcher.target.attribute)
    if not isinstance(definitions, dg.Definitions):  # a dagster.definitions function
        definitions = definitions()
    return sorted(definitions.resolve_job_def(job_name).asset_layer.executable_asset_keys, key=str)
