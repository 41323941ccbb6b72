"""Every use of Dagster's private modules, in one place, each with the public API it stands in for.

The CLI and the demo submit asset backfills from Python and drive them in process, which Dagster
offers publicly only through the UI, the GraphQL API and the daemon. Verified against
``TESTED_DAGSTER``; ``tests/test_dagster_internals.py`` fails on any other release, naming this
file, so an upgrade re-checks each item below before anything runs.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

TESTED_DAGSTER = "1.13.27"

# Run tags Dagster writes (dagster._core.storage.tags; not exported by `dagster`).
BACKFILL_ID_TAG = "dagster/backfill"
PARTITION_NAME_TAG = "dagster/partition"
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

# Instance classes by module path, as dagster.yaml names them: no queue (nothing else would dequeue)
# and runs launched synchronously in this process. Public equivalent: none (dagster.yaml only).
DEFAULT_RUN_COORDINATOR = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
SYNC_IN_MEMORY_RUN_LAUNCHER = {"module": "dagster._core.launcher.sync_in_memory_run_launcher",
                               "class": "SyncInMemoryRunLauncher"}


def in_process_code_location_origin(module: str, attribute: str, location_name: str, working_directory: str,
                                    container_context: Mapping[str, Any] | None, container_image: str | None) -> Any:
    """A code location loaded in this process. Public equivalent: a workspace.yaml entry, read by `dagster dev`."""
    import sys

    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    return InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(executable_path=sys.executable, module_name=module,
                                                    attribute=attribute, working_directory=working_directory),
        location_name=location_name,
        container_context=dict(container_context) if container_context else None,
        container_image=container_image,
    )


@contextlib.contextmanager
def in_process_workspace(instance: Any, origin: Any) -> Iterator[Any]:
    """A workspace process context over ``origin``. Public equivalent: none (the webserver and daemon build theirs)."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget([origin])) as context:
        yield context


def instance_from_dir(home: str, overrides: Mapping[str, Any]) -> Any:
    """The instance in ``home`` with some of its dagster.yaml replaced. Public equivalent: only
    ``DagsterInstance.get()``, which takes dagster.yaml as it is."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(home, overrides=dict(overrides)))


def new_asset_backfill(backfill_id: str, asset_graph: Any, asset_keys: Sequence[Any], partition_keys: Sequence[str] | None,
                       tags: Mapping[str, str], run_config: Mapping[str, Any] | None, title: str | None,
                       dynamic_partitions_store: Any) -> Any:
    """An asset backfill record, what the UI's "Materialize" over partitions submits. Public equivalent: the
    GraphQL mutation launchPartitionBackfill (dagster-graphql), which needs a running webserver."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._time import get_current_timestamp

    return PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id, asset_graph=asset_graph,
        partition_names=list(partition_keys) if partition_keys is not None else None,
        asset_selection=list(asset_keys), backfill_timestamp=get_current_timestamp(), tags=dict(tags),
        dynamic_partitions_store=dynamic_partitions_store, all_partitions=partition_keys is None,
        title=title, description=None, run_config=dict(run_config) if run_config else None,
    )


def backfill_is_finished(backfill: Any) -> bool:
    """Whether a backfill record has stopped. Public equivalent: none (the UI's Backfills page reads it)."""
    from dagster._core.execution.backfill import BulkActionStatus

    return backfill.status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING)


def backfill_iteration(context: Any, logger: Any) -> Iterator[Any]:
    """One pass of the daemon's backfill loop over ``context``. Public equivalent: ``dagster-daemon run``."""
    from dagster._daemon.backfill import execute_backfill_iteration

    return execute_backfill_iteration(context, logger)


def daemon_statuses(instance: Any, daemon_types: Sequence[str]) -> Mapping[str, Any]:
    """The daemons' heartbeats. Public equivalent: ``dagster-daemon liveness-check`` (one process per check)."""
    from dagster._daemon.controller import get_daemon_statuses

    return get_daemon_statuses(instance, list(daemon_types), ignore_errors=True)
