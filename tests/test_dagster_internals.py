"""Dagster's private modules are used in one place (steering_assets/cli/dagster_internals.py), checked here.

On a Dagster release other than the one the wrapper was verified against, the first test fails and
names the file to re-check; the others say which private name moved.
"""

import ast
import inspect
from pathlib import Path

import dagster
import pytest

from steering_assets.cli import dagster_internals as internals

ROOT = Path(__file__).resolve().parents[1]


def test_the_installed_dagster_is_the_release_the_wrapper_was_verified_against():
    assert dagster.__version__ == internals.TESTED_DAGSTER, (
        f"dagster {dagster.__version__} is installed, steering_assets/cli/dagster_internals.py was verified against "
        f"{internals.TESTED_DAGSTER}: re-check each private import there (and its public replacement), then update "
        "TESTED_DAGSTER")


def test_no_other_product_module_imports_a_private_dagster_module():
    offending = []
    for package in ("steering_assets", "resources", "partitions", "demo"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "dagster_internals.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n.startswith("dagster._") for n in names):
                    offending.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offending, offending


def test_the_tag_constants_are_dagsters():
    from dagster._core.storage import tags

    for name in ("BACKFILL_ID_TAG", "PARTITION_NAME_TAG", "ASSET_PARTITION_RANGE_START_TAG", "ASSET_PARTITION_RANGE_END_TAG"):
        assert getattr(internals, name) == getattr(tags, name), name


@pytest.mark.parametrize("spec", [internals.DEFAULT_RUN_COORDINATOR, internals.SYNC_IN_MEMORY_RUN_LAUNCHER])
def test_the_instance_classes_exist_where_dagster_yaml_names_them(spec):
    import importlib

    assert hasattr(importlib.import_module(spec["module"]), spec["class"])


def test_the_private_callables_take_the_arguments_we_pass():
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster._daemon.controller import get_daemon_statuses

    backfill = inspect.signature(PartitionBackfill.from_asset_partitions).parameters
    assert {"backfill_id", "asset_graph", "partition_names", "asset_selection", "backfill_timestamp", "tags",
            "dynamic_partitions_store", "all_partitions", "title", "description", "run_config"} <= set(backfill)
    assert list(inspect.signature(execute_backfill_iteration).parameters)[:2] == ["workspace_process_context", "logger"]
    assert "ignore_errors" in inspect.signature(get_daemon_statuses).parameters
    assert {"REQUESTED", "CANCELING", "FAILING"} <= set(BulkActionStatus.__members__)


def test_the_silenced_warnings_are_the_ones_pytest_silences_and_each_is_explained():
    import tomllib

    from steering_assets.core.known_warnings import KNOWN_WARNINGS, silence_known_warnings

    configured = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["filterwarnings"]
    assert configured == [spec for spec, _ in KNOWN_WARNINGS]
    assert all(why.strip() for _, why in KNOWN_WARNINGS)
    silence_known_warnings()  # every category and spec parses
