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
    import boto3

    import re

    name = f"persona-{next(_BUCKETS)}-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:30].strip("-")
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    pytest.importorskip("dagster_postgres", reason="pip install -e '.[postgres]'")
    server = _start(LocalPostgres(tmp_path_factory.mktemp("postgres"), free_port()))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = _start(LocalRedis(tmp_path_factory.mktemp("redis"), free_port()))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory):
    """The demo rollouts (8 roles, 2 baselines, traits) and the tiny untrained demo model: no judge, no SAEs."""
    from steering_assets.demo.build import DemoWorkspace
    from steering_assets.demo.corpus import iter_demo_texts, write_demo_rollouts
    from steering_assets.demo.model import save_tiny_model

    workspace = DemoWorkspace(tmp_path_factory.mktemp("tiny_workspace"))
    write_demo_rollouts(workspace.data_root, seed=0)
    save_tiny_model(iter_demo_texts(workspace.data_root), workspace.model_path, seed=0)
    return workspace
