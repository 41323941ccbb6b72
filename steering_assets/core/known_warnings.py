"""The Dagster warnings the platform silences, each named and explained; every other warning shows.

The same list is pytest's ``filterwarnings`` in pyproject.toml (a test keeps them equal), so the test
run shows everything else, and ``silence_known_warnings()`` applies it where the code location runs
(``dagster dev``, the CLI, the demo).
"""

from __future__ import annotations

import warnings

# (action:message-regex:category[:module], why) in pytest's filterwarnings syntax.
KNOWN_WARNINGS: tuple[tuple[str, str], ...] = (
    ("ignore:Specifying a partitions_def on an AssetCheckSpec:dagster.PreviewWarning",
     "Partitioned asset checks: each persona keeps its own check status (a design rule)."),
    ("ignore:Class `DataVersionsByPartition`:dagster.BetaWarning",
     "Data versions of partitioned source assets: an edited rollout file marks only its persona stale."),
    ("ignore:Parameter `backfill_policy`:dagster.BetaWarning",
     "Chunked backfills (BackfillPolicy.multi_run): one model load serves many personas."),
    ("ignore:Function `observable_source_asset`:dagster.BetaWarning",
     "Observable source assets: the raw rollouts and scenario files, versioned by content."),
    ("ignore:Property `OpDefinition.version` is deprecated:DeprecationWarning:dagster",
     "Raised inside Dagster when it converts an observable source asset; our code sets code_version."),
    ("ignore:InitResourceContext.dagster_run is deprecated:DeprecationWarning:dagster",
     "Raised inside Dagster's own resource initialisation; no call of ours."),
    ("ignore:Function `AssetSelection.sources` is deprecated:DeprecationWarning:dagster",
     "Raised inside Dagster's asset backfill code; we select assets by key."),
    ("ignore:Property `ScheduleDefinition.environment_vars` is deprecated:DeprecationWarning:dagster",
     "Raised inside Dagster when it snapshots any schedule; we set no environment_vars."),
    ("ignore:coroutine 'BaseEventLoop.shutdown_asyncgens' was never awaited:RuntimeWarning",
     "Dagster's in-process run teardown leaves this coroutine unawaited after every run."),
)


def silence_known_warnings() -> None:
    """Apply ``KNOWN_WARNINGS`` to this process's warning filters."""
    import builtins
    import importlib

    for spec, _ in KNOWN_WARNINGS:
        action, message, category, *module = spec.split(":")
        module_name, _, category_name = category.rpartition(".")
        category_type = getattr(importlib.import_module(module_name) if module_name else builtins, category_name)
        warnings.filterwarnings(action, message=message, category=category_type, module=module[0] if module else "")
