"""Run a job's partitions with `execute_in_process`, one run per partition or per chunk.

Tests and benchmarks/demo_launch.py use this. The CLI and `make demo` send their work through
Dagster's backfill machinery instead (steering_assets/cli/launch.py), so that their runs belong
to the code location and obey the run queue and pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import dagster as dg

from steering_assets.core.progress import QUIET_RUN_CONFIG, failure_message


@dataclass
class PartitionRun:
    partition_key: str
    run_id: str
    success: bool
    error: str | None = None


def execute(job, instance: dg.DagsterInstance, run_config: dict | None, **kwargs) -> tuple[str, bool, str | None]:
    """Run ``job`` in this process; returns (run id, success, the user-facing failure reason)."""
    result = job.execute_in_process(
        instance=instance, run_config={**QUIET_RUN_CONFIG, **(run_config or {})}, raise_on_error=False, **kwargs
    )
    if result.success:
        return result.run_id, True, None
    failures = [e for e in result.all_events if e.is_step_failure]
    return result.run_id, False, failure_message(failures[0]) if failures else "run failed"


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
    outcomes = []
    for index, key in enumerate(partition_keys, start=1):
        run_id, success, error = execute(job, instance, run_config, partition_key=key, tags={"steering_assets/launched_by": "cli"})
        outcomes.append(PartitionRun(key, run_id, success, error))
        progress(f"[{index}/{len(partition_keys)}] {job_name} {key}: {'ok' if success else f'FAILED: {error}'}")
    return outcomes


def contiguous_chunks(all_keys: Sequence[str], selected: Sequence[str], size: int) -> list[list[str]]:
    """Split ``selected`` into runs that are contiguous in ``all_keys`` order, at most ``size`` long.

    A ranged run covers every partition between its first and last key, so a chunk
    must never straddle a partition that was not selected.
    """
    wanted = set(selected)
    chunks: list[list[str]] = []
    current: list[str] = []
    for key in all_keys:
        if key in wanted and len(current) < size:
            current.append(key)
            continue
        if current:
            chunks.append(current)
        current = [key] if key in wanted else []
    if current:
        chunks.append(current)
    return chunks


def run_partition_chunks(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    chunks: Sequence[Sequence[str]],
    *,
    run_config: dict | None = None,
    progress: Callable[[str], None] = print,
) -> list[PartitionRun]:
    """One run per chunk of partitions (a ranged run), as a chunked backfill launches them."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    job = defs.resolve_job_def(job_name)
    outcomes = []
    for index, chunk in enumerate(chunks, start=1):
        tags = {ASSET_PARTITION_RANGE_START_TAG: chunk[0], ASSET_PARTITION_RANGE_END_TAG: chunk[-1], "steering_assets/launched_by": "cli"}
        run_id, success, error = execute(job, instance, run_config, tags=tags)
        outcomes += [PartitionRun(key, run_id, success, error) for key in chunk]
        status = "ok" if success else f"FAILED: {error}"
        progress(f"[chunk {index}/{len(chunks)}] {job_name} {chunk[0]} … {chunk[-1]} ({len(chunk)} partitions): {status}")
    return outcomes
