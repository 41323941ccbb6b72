"""The CLI: backfilling every role partition against a real instance, and its errors."""

import shutil

import dagster as dg
import pytest

from steering_assets import cli
from tests.world import ROLES, SOURCE_MODEL


@pytest.fixture
def cli_env(demo_workspace, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(demo_workspace.data_root, data)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PERSONA_DATA_ROOT", str(data))
    monkeypatch.setenv("PERSONA_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("PERSONA_MODEL", str(demo_workspace.model_path))
    return data


def materialized_partitions(asset):
    with dg.DagsterInstance.get() as instance:
        return instance.get_materialized_partitions(dg.AssetKey(["roles", asset]))


def test_backfill_all_roles_materialises_every_partition(cli_env, capsys):
    assert cli.main(["backfill", "roles", "--in-process"]) == 0
    # responses/default.jsonl is a partition too (the default assistant's role vector); it has a dataset and no split
    # (its latest split event says why: the chunk's range output covers it).
    expected = {f"{SOURCE_MODEL}/{n}" for n in (*ROLES, "default")}
    assert materialized_partitions("persona_dataset") == expected
    assert materialized_partitions("persona_training_split") == expected
    with dg.DagsterInstance.get() as instance:
        event = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["roles", "persona_training_split"]), asset_partitions=[f"{SOURCE_MODEL}/default"]), limit=1)
    assert "a baseline role" in event.records[0].asset_materialization.metadata["not_computed"].value
    assert not (cli_env.parent / "artifacts" / "roles" / "persona_training_split" / SOURCE_MODEL / "default").exists()
    assert f"{len(ROLES) + 1} of {len(ROLES) + 1} roles partitions materialised" in capsys.readouterr().out


def test_one_bad_persona_does_not_sink_the_backfill(cli_env, capsys):
    bad = cli_env / SOURCE_MODEL / "responses" / "broken.jsonl"
    bad.write_text('{"label": "pos"}\n')
    assert cli.main(["backfill", "roles", "--in-process"]) == 1
    out = capsys.readouterr().out
    assert f"{SOURCE_MODEL}/broken: FAILED" in out and "broken.jsonl:1: missing field" in out
    assert f"{len(ROLES) + 1} of {len(ROLES) + 2} roles partitions materialised" in out
    assert materialized_partitions("persona_training_split") >= {f"{SOURCE_MODEL}/{n}" for n in ROLES}


def test_unknown_partitions_are_named(cli_env):
    with pytest.raises(SystemExit, match=f"unknown roles partitions: {SOURCE_MODEL}/nobody"):
        cli.main(["backfill", "roles", "--partitions", f"{SOURCE_MODEL}/pirate,{SOURCE_MODEL}/nobody"])


def test_missing_settings_say_what_to_set(monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(SystemExit, match="DAGSTER_HOME is not set"):
        cli.main(["sync-partitions"])
