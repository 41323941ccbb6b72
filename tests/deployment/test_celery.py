"""Celery on Redis (deploy/celery): two workers, one per GPU, running the chunked steering backfill.

Redis and PostgreSQL run on 127.0.0.1; each worker is a real `dagster-celery worker` with its own
CUDA_VISIBLE_DEVICES, one run at a time and nothing reserved ahead. The daemon dequeues the
two steering chunks (gpu pool: 2 slots) and the Celery run launcher hands one to each worker.
"""

import os
import re
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from steering_assets.cli import launch
from steering_assets.deployment.instance import GPU_POOL, set_pool_limit
from steering_assets.deployment.servers import celery_worker_command, gpu_worker_envs, start_process, stop_process
from steering_assets.deployment.tags import cpu_run_tags
from tests.deployment.conftest import QUIET, REPO, TINY_TRAINING, model_loads, run_records

pytest.importorskip("dagster_celery", reason="pip install -e '.[celery]'")
psutil = pytest.importorskip("psutil")

KEYS = [f"SmolLM2-135M-Instruct.Q4_1/{name}" for name in ("chef", "detective", "gardener", "pirate")]


def _wait_for_workers(broker: str, count: int, timeout_s: float = 180) -> None:
    from celery import Celery

    app = Celery(broker=broker)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= count:
            return
        time.sleep(1)
    raise TimeoutError(f"{count} Celery workers did not answer within {timeout_s:.0f}s")


def _run_pid(instance, run_id) -> int:
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        message = (entry.dagster_event.message if entry.dagster_event else None) or entry.user_message
        found = re.search(r"Started process for run \(pid: (\d+)\)", message)
        if found:
            return int(found.group(1))
    raise AssertionError(f"run {run_id} never reported its process")


def test_two_gpu_workers_each_take_one_steering_chunk(postgres_env, redis_server, deployment_env, tmp_path):
    from steering_assets.partitions.personas import sync_partitions

    celery_env = {**postgres_env, "DAGSTER_CELERY_BROKER_URL": redis_server.url,
                  "DAGSTER_CELERY_BACKEND_URL": redis_server.url}
    home = deployment_env("celery", celery_env, personas_per_run=2)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_launcher).__name__ == "CeleryRunLauncher"
        set_pool_limit(instance, GPU_POOL, 2)
        sync_partitions(instance, tmp_path / "data")

    # The training splits the chunks read, made in this process (not what this test is about).
    local = launch.in_process_instance(home)
    with launch.workspace_context(local) as context:
        splits = launch.submit_asset_backfill(
            local, context, [dg.AssetKey(["roles", "persona_dataset"]), dg.AssetKey(["roles", "persona_training_split"])],
            KEYS, tags=cpu_run_tags(), run_config=QUIET,
        )
        launch.run_backfill_in_process(context, splits)
    assert launch.backfill_outcome(local, splits).success

    venv_bin = Path(sys.executable).parent
    base = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    workers = [
        start_process(celery_worker_command(venv_bin, f"gpu{i}", ["dagster"], REPO / "deploy" / "celery" / "worker.yaml"),
                      tmp_path / f"worker{i}.log", env)
        for i, env in enumerate(gpu_worker_envs(base, 2))
    ]
    try:
        _wait_for_workers(redis_server.url, 2)
        with dg.DagsterInstance.get() as instance:
            with launch.workspace_context(instance) as context, launch.running_daemon(instance, home / "daemon.log"):
                steering = launch.submit_asset_backfill(
                    instance, context, [dg.AssetKey(["roles", "steering_vector"])], KEYS,
                    run_config={**QUIET, "ops": {"roles__steering_vector": {"config": TINY_TRAINING}}},
                )
                launch.wait_for_backfill(instance, steering, timeout_s=420)
            outcome = launch.backfill_outcome(instance, steering)
            assert outcome.materialized["roles/steering_vector"] == sorted(KEYS), outcome.errors
            records = run_records(instance, steering)
            assert len(records) == 2 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
            # Each chunk (2 personas) loaded the model once.
            assert [model_loads(instance, r.dagster_run.run_id) for r in records] == [1, 1]
            # One chunk per worker, each on its own device: no worker held both while the other idled.
            devices = {psutil.Process(_run_pid(instance, r.dagster_run.run_id)).environ()["CUDA_VISIBLE_DEVICES"]
                       for r in records}
            assert devices == {"0", "1"}
    finally:
        for worker in workers:
            stop_process(worker)
