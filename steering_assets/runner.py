"""Run a partitioned job over many partitions against a Dagster instance, one run per partition.

This is what a UI backfill of the persona jobs does, without needing the daemon: each
partition is its own run (visible in the UI), and one failing partition does not stop
the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import dagster as dg


# Progress is printed per partition; Dagster's own console lines are kept to warnings.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class PartitionRun:
    partition_key: str
    run_id: str
    success: bool
    error: str | None = None


def run_partitions(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    partition_keys: Sequence[str],
    *,
    run_config: dict | None = None,
    progress: Callable[[str], None] = print,
) -> list[PartitionRun]:
    job = defs.resolve_job_def(job_name)
    run_config = {**QUIET_RUN_CONFIG, **(run_config or {})}
    outcomes = []
    for index, key in enumerate(partition_keys, start=1):
        result = job.execute_in_process(
            instance=instance,
            partition_key=key,
            run_config=run_config,
            raise_on_error=False,
            tags={"steering_assets/launched_by": "cli"},
        )
        error = None
        if not result.success:
            failures = [e for e in result.all_events if e.is_step_failure]
            error = failure_message(failures[0]) if failures else "run failed"
        outcomes.append(PartitionRun(key, result.run_id, result.success, error))
        status = "ok" if result.success else f"FAILED: {error}"
        progress(f"[{index}/{len(partition_keys)}] {job_name} {key}: {status}")
    return outcomes


def failure_message(event: dg.DagsterEvent) -> str:
    """The user-facing reason of a step failure: a Failure's description, else the root exception."""
    data = event.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    while error.cause is not None:
        error = error.cause
    return error.message.strip()
