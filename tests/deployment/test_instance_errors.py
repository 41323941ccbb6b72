"""Bad deployment settings fail before anything launches, naming what to fix and never the password."""

import pytest

from steering_assets import cli
from steering_assets.deployment.instance import (
    GPU_POOL,
    InstanceConfigError,
    check_instance_storage,
    set_pool_limit,
    validate_pool_limit,
)
from steering_assets.deployment.servers import free_port
from tests.deployment.conftest import REPO

SECRET = "s3cr3t-Value-never-shown"


@pytest.fixture
def pg_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(REPO / "deploy" / "postgres" / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _set(monkeypatch, **env):
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))


def test_wrong_password_names_the_host_and_the_variable(postgres_server, pg_home, monkeypatch, capsys):
    _set(monkeypatch, **{**postgres_server.env(), "DAGSTER_PG_PASSWORD": SECRET})
    with pytest.raises(InstanceConfigError) as err:
        check_instance_storage(pg_home)
    message = str(err.value)
    assert f"Postgres at 127.0.0.1:{postgres_server.port}" in message
    assert "set DAGSTER_PG_PASSWORD" in message and "password authentication failed" in message
    assert SECRET not in message
    # The CLI stops with the same message before touching the instance.
    with pytest.raises(SystemExit) as stop:
        cli.main(["instance", "check"])
    assert "DAGSTER_PG_PASSWORD" in str(stop.value) and SECRET not in str(stop.value)


def test_unreachable_server_names_host_port_and_their_variables(pg_home, monkeypatch):
    port = free_port()  # nothing listens there
    _set(monkeypatch, DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PORT=port, DAGSTER_PG_USERNAME="dagster",
         DAGSTER_PG_PASSWORD=SECRET, DAGSTER_PG_DB="dagster")
    with pytest.raises(InstanceConfigError) as err:
        check_instance_storage(pg_home)
    message = str(err.value)
    assert f"Postgres at 127.0.0.1:{port}: the server cannot be reached" in message
    assert "DAGSTER_PG_HOST" in message and "DAGSTER_PG_PORT" in message and SECRET not in message


def test_a_missing_variable_is_named(pg_home, monkeypatch):
    for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(InstanceConfigError, match="reads the environment variable DAGSTER_PG_HOST, which is not set"):
        check_instance_storage(pg_home)


def test_the_right_settings_pass(postgres_server, pg_home, monkeypatch, capsys):
    _set(monkeypatch, **postgres_server.env())
    assert cli.main(["instance", "check"]) == 0
    assert f"Postgres at 127.0.0.1:{postgres_server.port} (connected)" in capsys.readouterr().out


@pytest.mark.parametrize("limit", [0, -1, True, 1.5])
def test_a_pool_limit_that_would_never_launch_is_refused(limit):
    with pytest.raises(InstanceConfigError, match="would never launch a run of that pool"):
        validate_pool_limit(GPU_POOL, limit)


def test_pool_limit_zero_from_the_cli_stores_nothing(tmp_path, monkeypatch):
    import dagster as dg

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with pytest.raises(SystemExit, match="limit 0 would never launch"):
        cli.main(["instance", "pools", "--gpu", "0"])
    with dg.DagsterInstance.get() as instance:
        assert GPU_POOL not in instance.event_log_storage.get_concurrency_keys()
        set_pool_limit(instance, GPU_POOL, 2)
        assert instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == 2
