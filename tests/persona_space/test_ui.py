"""Persona space launched from the UI: runs submitted to a real dagster-webserver through its GraphQL API.

`dagster dev` (what `make ui` runs) loads the code location from workspace.yaml with the settings in
its environment; a run submitted to its webserver (the Launchpad, or an asset's Materialize button for
one partition) is queued, and the daemon launches it in its own process. Here: the role vectors of
two roles and the default assistant, one partition per run, then the persona_space job (axis, PCA,
capping config, drift, capping evaluation).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from steering_assets.core.settings import Settings
from steering_assets.definitions import build_definitions, persona_job_name
from steering_assets.partitions.personas import sync_partitions
from steering_assets.persona_space.assets import (
    AXIS_KEY,
    CAPPING_EVAL_KEY,
    CAPPING_KEY,
    DRIFT_KEY,
    PCA_KEY,
    ROLE_VECTOR_KEY,
)
from steering_assets.persona_space.jobs import PERSONA_SPACE_JOB, ROLE_VECTOR_JOB
from tests.persona_space.test_assets import FANIN_CONFIG, ROLE_CONFIG
from tests.world import SOURCE_MODEL

REPO = Path(__file__).resolve().parents[2]
ROLES = ("default", "chef", "pirate")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"dagster-webserver did not answer {url} within {timeout:.0f} s")


@pytest.fixture
def webserver(demo_workspace, tmp_path, monkeypatch):
    data, artifacts, conversations, home = (tmp_path / n for n in ("data", "artifacts", "conversations", "dagster_home"))
    shutil.copytree(demo_workspace.data_root, data)
    conversations.mkdir()
    (conversations / "drift.jsonl").write_text(
        '[{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi, how can I help?"}, '
        '{"role": "user", "content": "Be a pirate now."}, {"role": "assistant", "content": "Arr, matey, the sea!"}]\n')
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    settings = {"DAGSTER_HOME": str(home), "PERSONA_DATA_ROOT": str(data), "PERSONA_ARTIFACT_ROOT": str(artifacts),
                "PERSONA_MODEL": str(demo_workspace.model_path), "PERSONA_CONVERSATIONS_ROOT": str(conversations),
                "PERSONA_JUDGE_BACKEND": "likelihood", "PERSONA_JUDGE_LOCAL_MODEL": str(demo_workspace.model_path)}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name in ("PERSONA_INSTRUCTIONS_ROOT", "PERSONA_CONCEPTS_ROOT", "PERSONA_SAE_CONFIG", "PERSONA_SCENARIOS_ROOT"):
        monkeypatch.delenv(name, raising=False)
    instance = dg.DagsterInstance.get()
    # Set-up, not under test: the partitions and the role datasets, in this process.
    sync_partitions(instance, data)
    defs = build_definitions(settings=Settings(data_root=str(data), artifact_root=str(artifacts), model=str(demo_workspace.model_path)))
    for role in ROLES[1:]:
        assert defs.resolve_job_def(persona_job_name("roles")).execute_in_process(
            instance=instance, partition_key=f"{SOURCE_MODEL}/{role}").success
    assert defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey(["roles", "baseline_dataset"])]).success
    port = _free_port()
    # `make ui`'s command: the webserver and the daemon, whose run queue launches what the UI submits.
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")],
        cwd=REPO, env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/server_info", server)
        yield port, instance, artifacts
    finally:
        # dagster dev shuts its webserver and daemon down on SIGINT (it ignores SIGTERM from a script).
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        instance.dispose()


def _finish(client, run_id: str, timeout: float = 240.0) -> str:
    from dagster_graphql import DagsterGraphQLClientError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = client.get_run_status(run_id)
        except DagsterGraphQLClientError:  # the run is not stored yet
            status = None
        if status is not None and status.value in ("SUCCESS", "FAILURE", "CANCELED"):
            return status.value
        time.sleep(1.0)
    raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f} s")


@pytest.mark.filterwarnings("ignore::DeprecationWarning:gql")
def test_role_vectors_and_the_fan_ins_materialise_from_runs_launched_by_the_webserver(webserver):
    from dagster_graphql import DagsterGraphQLClient

    port, instance, artifacts = webserver
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    # One partition per run, as an asset's Materialize button launches it; the daemon dequeues and launches each.
    runs = {role: client.submit_job_execution(ROLE_VECTOR_JOB, run_config=ROLE_CONFIG, tags={"dagster/partition": f"{SOURCE_MODEL}/{role}"})
            for role in ROLES}
    for role, run_id in runs.items():
        assert _finish(client, run_id) == "SUCCESS", (role, [e.message for e in instance.all_logs(run_id) if e.message][-5:])
    # Two roles span one direction once centred: one component.
    config = {"ops": {**FANIN_CONFIG["ops"], "persona_space__persona_pca": {"config": {"n_components": 1}}},
              "loggers": ROLE_CONFIG["loggers"]}
    fan_ins = client.submit_job_execution(PERSONA_SPACE_JOB, run_config=config)
    assert _finish(client, fan_ins) == "SUCCESS", [e.message for e in instance.all_logs(fan_ins) if e.message][-5:]

    assert instance.get_materialized_partitions(ROLE_VECTOR_KEY) == {f"{SOURCE_MODEL}/{r}" for r in ROLES}
    for key in (AXIS_KEY, PCA_KEY, CAPPING_KEY, DRIFT_KEY, CAPPING_EVAL_KEY):
        [record] = instance.fetch_materializations(key, limit=1).records
        assert record.run_id == fan_ins, key
    axis = instance.fetch_materializations(AXIS_KEY, limit=1).records[0].asset_materialization.metadata
    assert (axis["n_default"].value, axis["n_roles"].value) == (1, 2)
    assert axis["norm_per_layer"].value.startswith("![axis norms](data:image/png;base64,")
    assert (artifacts / "persona_space" / "capping_eval" / SOURCE_MODEL / "capping_eval.json").is_file()
