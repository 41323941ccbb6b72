"""Real servers on 127.0.0.1, started and stopped by the tests themselves.

A server whose binary or package is not installed is skipped with the install command;
`.ci/run` installs all of them (apt: postgresql, redis-server; pip: the deployment extras).
"""

import os

import pytest

from steering_assets.deployment.servers import LocalPostgres, LocalRedis, LocalS3, ServerUnavailable, free_port


def _start(server):
    try:
        return server.start()
    except ServerUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = _start(LocalS3(tmp_path_factory.mktemp("moto"), free_port()))
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_BUCKETS = __import__("itertools").count()


@pytest.fixture
def bucket(s3_server, request):
    import re

    import boto3

    name = f"persona-{next(_BUCKETS)}-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:30].strip("-")
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    pytest.importorskip("dagster_postgres", reason="pip install -e '.[postgres]'")
    server = _start(LocalPostgres(tmp_path_factory.mktemp("postgres"), free_port()))
    yield server
    server.stop()


_DATABASES = __import__("itertools").count()


@pytest.fixture
def postgres_env(postgres_server):
    """The DAGSTER_PG_* settings of a fresh database: one instance per test, so one test's daemon
    heartbeats, runs and pools are never seen by the next."""
    return postgres_server.create_database(f"dagster_test_{next(_DATABASES)}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = _start(LocalRedis(tmp_path_factory.mktemp("redis"), free_port()))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_workspace(demo_workspace):
    """The test world: SmolLM2's recorded rollouts (4 roles, the default assistant, 2 traits) and a tiny random model.

    The suite builds this workspace once for every family's tests; the deployment tests only
    read it (they copy the rollouts where runs could write).
    """
    return demo_workspace


REPO = __import__("pathlib").Path(__file__).resolve().parents[2]

# Tiny training for the real-server runs: they check where and how runs execute, not the vectors.
TINY_TRAINING = {"max_steps": 2, "max_length": 32, "eval_steps": 1, "save_steps": 1, "per_device_batch_size": 2,
                 "warmup_steps": 0, "early_stopping_patience": 0}
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@pytest.fixture
def deployment_env(tiny_workspace, tmp_path, monkeypatch):
    """A Dagster home using one of deploy/'s instance configs, and the settings a code location reads."""
    import shutil

    def make(config: str, extra_env: dict, personas_per_run: int = 2, datasets_per_run: int = 3):
        home = tmp_path / f"home-{config}"
        home.mkdir()
        (home / "dagster.yaml").symlink_to(REPO / "deploy" / config / "dagster.yaml")
        data = tmp_path / "data"
        if not data.exists():
            shutil.copytree(tiny_workspace.data_root, data)
        env = {
            "DAGSTER_HOME": str(home), "PERSONA_DATA_ROOT": str(data), "PERSONA_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "PERSONA_MODEL": str(tiny_workspace.model_path), "PERSONA_CONCEPTS_ROOT": str(tmp_path / "none"),
            "PERSONA_SAE_CONFIG": str(tmp_path / "none.json"), "PERSONA_SCENARIOS_ROOT": str(tmp_path / "none"),
            "PERSONA_JUDGE_BACKEND": "local", "PERSONA_PERSONAS_PER_RUN": str(personas_per_run),
            "PERSONA_DATASETS_PER_RUN": str(datasets_per_run), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            **extra_env,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(REPO)
        return home

    return make


@pytest.fixture
def fresh_code_location(monkeypatch):
    """Load the code location anew under this test's settings when it is loaded in this process.

    Settings such as PERSONA_PERSONAS_PER_RUN are read when the definitions are imported (a
    backfill policy is part of the asset definition), as a code server does at start-up. The
    suite has imported them long before with other settings; the originals come back afterwards.
    """
    import sys

    for name in [n for n in sys.modules if n.split(".")[0] in {"steering_assets", "resources", "partitions"}]:
        monkeypatch.delitem(sys.modules, name)


def run_records(instance, backfill_id):
    from steering_assets.cli.launch import backfill_runs

    return [r for r in backfill_runs(instance, backfill_id)]


def overlapping(records) -> int:
    """The most runs that were executing at the same moment (from their start and end times)."""
    edges = sorted([(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records], key=lambda e: (e[0], e[1]))
    current = peak = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def model_loads(instance, run_id) -> int:
    """How often a run loaded the language model (LanguageModelResource logs each load)."""
    return sum(
        1 for entry in instance.all_logs(run_id)
        if entry.user_message.startswith("loaded ") and " on " in entry.user_message
    )
