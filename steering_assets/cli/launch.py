"""Backfills submitted through Dagster's own backfill machinery, so they show where a person looks.

A backfill made here is the same record the UI makes (an asset backfill): its runs belong to
the ``steering_assets`` code location, so the UI's backfill page, job pages and timeline show
them, the backfill policies chunk them (one run per K personas), and the run queue and pools
decide when each launches. Who executes the runs:

- a ``dagster-daemon`` already running against the instance (``make ui`` starts one): the CLI
  submits and waits;
- no daemon: the CLI starts ``dagster-daemon run`` for the length of the backfill and stops it;
- ``in_process``: this process plays the daemon's part (Dagster's own backfill iteration) and
  executes each run synchronously right here. Runs are still recorded with their code
  location and the backfill, and steps still claim pool slots, but there is no run queue:
  one run at a time. ``make demo`` uses this, since starting a run worker process per run
  would cost seconds per run on two cores; it is also the fallback where no daemon can run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import dagster as dg

LOCATION_NAME = "steering_assets"
DEFINITIONS_MODULE = "steering_assets.definitions"
LAUNCHED_BY_TAG = "steering_assets/launched_by"
# The daemon's backfill iteration logs to this logger; its per-iteration chatter is debug level.
_LOGGER = logging.getLogger("steering_assets.cli.launch")


@dataclass(frozen=True)
class CodeLocationTarget:
    """Where the code location's Definitions are: ``module:attribute``. The default is workspace.yaml's; a
    program that builds the definitions from settings it holds (the demo) names its own module."""

    module: str = DEFINITIONS_MODULE
    attribute: str = "defs"


def code_location_origin(container_context: Mapping[str, Any] | None = None, container_image: str | None = None,
                         target: CodeLocationTarget = CodeLocationTarget()):
    """The code location under workspace.yaml's name, loaded in this process (no gRPC server).

    ``container_context`` and ``container_image``: what a deployment attaches to the location
    (the Helm chart's user deployment does, for the Kubernetes run launcher).
    """
    from steering_assets.cli.dagster_internals import in_process_code_location_origin

    return in_process_code_location_origin(target.module, target.attribute, LOCATION_NAME, os.getcwd(),
                                           container_context, container_image)


@contextlib.contextmanager
def workspace_context(
    instance: dg.DagsterInstance, container_context: Mapping[str, Any] | None = None, container_image: str | None = None,
    target: CodeLocationTarget = CodeLocationTarget(),
) -> Iterator[Any]:
    """A Dagster workspace holding this project's code location, loaded in this process."""
    from steering_assets.cli.dagster_internals import in_process_workspace

    with in_process_workspace(instance, code_location_origin(container_context, container_image, target)) as context:
        yield context


def in_process_instance(dagster_home: str | os.PathLike | None = None) -> dg.DagsterInstance:
    """The instance in DAGSTER_HOME, with runs launched synchronously in this process.

    Storage, pools and everything else stay as configured; only the run coordinator (no
    queue: nothing else would dequeue) and the run launcher (this process) are replaced.
    """
    from steering_assets.cli.dagster_internals import (
        DEFAULT_RUN_COORDINATOR,
        SYNC_IN_MEMORY_RUN_LAUNCHER,
        instance_from_dir,
    )

    home = os.fspath(dagster_home or os.environ["DAGSTER_HOME"])
    return instance_from_dir(home, {"run_coordinator": DEFAULT_RUN_COORDINATOR, "run_launcher": SYNC_IN_MEMORY_RUN_LAUNCHER})


def new_backfill_id(instance: dg.DagsterInstance) -> str:
    """A backfill id in Dagster's format (8 lower-case letters) that the instance does not hold yet.

    Not Dagster's ``make_new_backfill_id``: it draws from Python's global ``random``, which model
    training seeds (``transformers.set_seed``), so two backfills submitted after two equally seeded
    trainings in one process got the same id and the second failed on the storage's unique key.
    """
    import random
    import string

    draw = random.SystemRandom()
    while True:
        backfill_id = "".join(draw.choice(string.ascii_lowercase) for _ in range(8))
        if instance.get_backfill(backfill_id) is None:
            return backfill_id


def submit_asset_backfill(
    instance: dg.DagsterInstance,
    context: Any,
    asset_keys: Sequence[dg.AssetKey],
    partition_keys: Sequence[str] | None,
    *,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> str:
    """Record an asset backfill (what the UI's "Materialize" over partitions records); returns its id.

    ``partition_keys`` None: the assets are unpartitioned (one run materialises them all).
    """
    from steering_assets.cli.dagster_internals import new_asset_backfill

    backfill = new_asset_backfill(
        new_backfill_id(instance), context.create_request_context().asset_graph, asset_keys, partition_keys,
        {LAUNCHED_BY_TAG: "cli", **(tags or {})}, run_config, title, dynamic_partitions_store=instance,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def _finished(instance: dg.DagsterInstance, backfill_id: str) -> bool:
    from steering_assets.cli.dagster_internals import backfill_is_finished

    backfill = instance.get_backfill(backfill_id)
    return backfill is not None and backfill_is_finished(backfill)


def run_backfill_in_process(context: Any, backfill_id: str, progress: Callable[[str], None] | None = None) -> None:
    """Drive a backfill to its end with Dagster's own backfill iteration; runs execute here.

    ``context`` must come from ``workspace_context(in_process_instance())``.
    """
    from steering_assets.cli.dagster_internals import backfill_iteration

    instance = context.instance
    seen: set[str] = set()
    while not _finished(instance, backfill_id):
        for error in backfill_iteration(context, _LOGGER):
            if error is not None:
                raise RuntimeError(f"backfill {backfill_id}: {error.to_string()}")
        if progress:
            for record in backfill_runs(instance, backfill_id):
                if record.dagster_run.run_id not in seen and record.dagster_run.is_finished:
                    seen.add(record.dagster_run.run_id)
                    progress(describe_run(record.dagster_run))


def daemon_is_running(instance: dg.DagsterInstance) -> bool:
    """True when a dagster-daemon heartbeats against this instance (backfills and the run queue)."""
    from steering_assets.cli.dagster_internals import daemon_statuses

    wanted = ["BACKFILL"] + (["QUEUED_RUN_COORDINATOR"] if "QUEUED_RUN_COORDINATOR" in instance.get_required_daemon_types() else [])
    try:
        statuses = daemon_statuses(instance, wanted)
    except Exception:  # no heartbeat table yet on a fresh instance
        return False
    return all(status.healthy for status in statuses.values())


@contextlib.contextmanager
def running_daemon(instance: dg.DagsterInstance, log_path: Path, startup_timeout_s: float = 120) -> Iterator[bool]:
    """Yield with a dagster-daemon serving the instance: the one already running, else one started here.

    Yields True when this call started the daemon (and stops it afterwards).
    """
    from steering_assets.deployment.servers import start_process, stop_process

    if daemon_is_running(instance):
        yield False
        return
    # The same code location as workspace.yaml, wherever this command runs from.
    workspace = log_path.parent / "steering-assets-workspace.yaml"
    workspace.parent.mkdir(parents=True, exist_ok=True)
    workspace.write_text(
        f"load_from:\n  - python_module:\n      module_name: {DEFINITIONS_MODULE}\n"
        f"      location_name: {LOCATION_NAME}\n      working_directory: {Path.cwd()}\n"
    )
    command = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)]
    process = start_process(command, log_path, os.environ, cwd=Path.cwd())
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not daemon_is_running(instance):
            if process.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited with {process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"dagster-daemon sent no heartbeat in {startup_timeout_s:.0f}s; see {log_path}")
            time.sleep(1)
        yield True
    finally:
        stop_process(process)


def _all_targets_materialized(instance: dg.DagsterInstance, backfill_id: str) -> bool:
    """Every asset partition the backfill targets has a materialization newer than the backfill.

    The daemon notices that a backfill is complete on its next backfill pass (every 30 s);
    this sees it as soon as the last run has written its events.
    """
    backfill = instance.get_backfill(backfill_id)
    target = backfill.asset_backfill_data.target_subset
    return all(set(_subset_keys(target, key)) <= _materialized_since(instance, backfill, key) for key in backfill.asset_selection)


def _materialized_since(instance: dg.DagsterInstance, backfill: Any, key: dg.AssetKey) -> set[str]:
    """Partitions of ``key`` materialised since the backfill was submitted."""
    done: set[str] = set()
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_timestamp=backfill.backfill_timestamp), limit=1000, cursor=cursor
        )
        done |= {r.partition_key or "(unpartitioned)" for r in page.records}
        if not page.has_more:
            return done
        cursor = page.cursor


# A daemon's heartbeat is every 30 s or so; this long without one means it is gone.
DAEMON_SILENCE_S = 180.0


def wait_for_backfill(
    instance: dg.DagsterInstance, backfill_id: str, timeout_s: float, progress: Callable[[str], None] | None = None,
    poll_s: float = 1.0,
) -> None:
    """Wait until the backfill's runs are over: the daemon has closed it, or it has materialised every target.

    Raises TimeoutError after ``timeout_s``, and RuntimeError when no dagster-daemon has sent a
    heartbeat for ``DAEMON_SILENCE_S`` (it died: nothing would ever launch the remaining runs).
    """
    deadline = time.monotonic() + timeout_s
    seen: set[str] = set()
    last_alive = last_check = time.monotonic()
    while True:
        if time.monotonic() - last_check >= min(10.0, DAEMON_SILENCE_S):
            last_check = time.monotonic()
            if daemon_is_running(instance):
                last_alive = last_check
        if time.monotonic() - last_alive > DAEMON_SILENCE_S:
            raise RuntimeError(
                f"backfill {backfill_id}: no dagster-daemon has served {instance.root_directory} for "
                f"{DAEMON_SILENCE_S:.0f}s, so nothing launches its remaining runs; start one (`dagster-daemon run`, "
                "or run this command again, which starts one) and the backfill goes on where it stopped"
            )
        runs = backfill_runs(instance, backfill_id)
        if progress:
            for record in runs:
                if record.dagster_run.run_id not in seen and record.dagster_run.is_finished:
                    seen.add(record.dagster_run.run_id)
                    progress(describe_run(record.dagster_run))
        if all(r.dagster_run.is_finished for r in runs) and (
            _finished(instance, backfill_id) or (runs and _all_targets_materialized(instance, backfill_id))
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfill {backfill_id} still running after {timeout_s:.0f}s")
        time.sleep(poll_s)


def backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> list:
    from steering_assets.cli.dagster_internals import BACKFILL_ID_TAG

    return list(reversed(instance.get_run_records(dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))))


def run_partition_keys(run: dg.DagsterRun) -> list[str]:
    """The partitions a run covers: its partition tag, or every key of its range."""
    from steering_assets.cli.dagster_internals import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
        PARTITION_NAME_TAG,
    )

    if PARTITION_NAME_TAG in run.tags:
        return [run.tags[PARTITION_NAME_TAG]]
    start, end = run.tags.get(ASSET_PARTITION_RANGE_START_TAG), run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    return [start, end] if start and end and start != end else [k for k in (start,) if k]


def describe_run(run: dg.DagsterRun) -> str:
    keys = run_partition_keys(run)
    what = ", ".join(key.path[-1] for key in sorted(run.asset_selection or [], key=str)) or run.job_name
    span = f" {keys[0]} … {keys[-1]}" if len(keys) == 2 else (f" {keys[0]}" if keys else "")
    return f"run {run.run_id[:8]} {what}{span}: {run.status.value.lower()}"


@dataclass
class BackfillOutcome:
    backfill_id: str
    materialized: dict[str, list[str]] = field(default_factory=dict)  # asset path -> partition keys
    failed: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # partition key (or asset) -> reason
    runs: int = 0

    @property
    def success(self) -> bool:
        return not any(self.failed.values())


def backfill_outcome(instance: dg.DagsterInstance, backfill_id: str) -> BackfillOutcome:
    """Per asset, which partitions the backfill materialised and which failed, with each failure's reason."""
    from steering_assets.core.progress import failure_message

    backfill = instance.get_backfill(backfill_id)
    data = backfill.asset_backfill_data
    outcome = BackfillOutcome(backfill_id)
    for key in backfill.asset_selection:
        name = "/".join(key.path)
        # From the event log, not the backfill's bookkeeping, which the daemon updates every 30 s.
        targets = set(_subset_keys(data.target_subset, key))
        materialized = _materialized_since(instance, backfill, key) & targets
        outcome.materialized[name] = sorted(materialized)
        outcome.failed[name] = sorted(set(_subset_keys(data.failed_and_downstream_subset, key)) - materialized)
    records = backfill_runs(instance, backfill_id)
    outcome.runs = len(records)
    for record in records:
        run = record.dagster_run
        for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            per_partition = _failed_partitions_of(event.dagster_event)
            if per_partition:  # a chunk that names each failed persona (personas/assets.py)
                for partition, reason in per_partition.items():
                    outcome.errors.setdefault(partition, reason)
                continue
            reason = failure_message(event.dagster_event)
            for partition in _partitions_named(reason, run) or run_partition_keys(run) or [run.job_name]:
                outcome.errors.setdefault(partition, reason)
    return outcome


def _failed_partitions_of(event: Any) -> dict[str, str]:
    data = event.step_failure_data.user_failure_data
    value = data.metadata.get("failed_partitions") if data is not None else None
    return dict(value.value) if value is not None and isinstance(value.value, dict) else {}


def _subset_keys(subset: Any, key: dg.AssetKey) -> list[str]:
    asset_subset = subset.get_asset_subset(key) if hasattr(subset, "get_asset_subset") else None
    if asset_subset is None:
        return []
    value = asset_subset.value
    if isinstance(value, bool):
        return ["(unpartitioned)"] if value else []
    return sorted(value.get_partition_keys())


def _partitions_named(reason: str, run: dg.DagsterRun) -> list[str]:
    """A failure message starts with the partition it is about ("role/x: ..."); use it when it does."""
    head = reason.split(":", 1)[0].strip()
    return [head] if "/" in head and " " not in head else []
