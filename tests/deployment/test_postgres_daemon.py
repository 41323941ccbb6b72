"""A Postgres-backed instance (deploy/postgres) whose real dagster-daemon runs both backfills.

PostgreSQL runs on 127.0.0.1 for the test session; the daemon launches every run in its
own process through the run queue, and the `gpu` pool (limit 1) must keep the two steering
chunks from ever running at the same time although the queue would allow 8 runs.
"""

import dagster as dg
import pytest

from steering_assets.cli import launch
from steering_assets.deployment.instance import GPU_POOL, set_pool_limit
from steering_assets.deployment.tags import cpu_run_tags
from tests.deployment.conftest import QUIET, TINY_TRAINING, model_loads, overlapping, run_records
from tests.world import ROLES as WORLD_ROLES

ROLES = list(WORLD_ROLES)  # chef, detective, gardener, pirate


def test_daemon_runs_chunked_backfills_and_the_gpu_pool_holds(postgres_env, deployment_env, tmp_path):
    from steering_assets.partitions.personas import sync_partitions

    home = deployment_env("postgres", postgres_env, personas_per_run=2, datasets_per_run=3)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        set_pool_limit(instance, GPU_POOL, 1)
        sync_partitions(instance, tmp_path / "data")
        keys = [f"SmolLM2-135M-Instruct.Q4_1/{name}" for name in ROLES]
        steering_keys = keys[:4]
        with launch.workspace_context(instance) as context, launch.running_daemon(instance, home / "daemon.log") as started:
            assert started  # nothing else was serving this instance
            datasets = launch.submit_asset_backfill(
                instance, context, [dg.AssetKey(["roles", "persona_dataset"]), dg.AssetKey(["roles", "persona_training_split"])],
                keys, tags=cpu_run_tags(), run_config=QUIET, title="roles persona datasets",
            )
            launch.wait_for_backfill(instance, datasets, timeout_s=240)
            steering = launch.submit_asset_backfill(
                instance, context, [dg.AssetKey(["roles", "steering_vector"])], steering_keys,
                run_config={**QUIET, "ops": {"roles__steering_vector": {"config": TINY_TRAINING}}}, title="roles steering",
            )
            launch.wait_for_backfill(instance, steering, timeout_s=300)

        dataset_outcome = launch.backfill_outcome(instance, datasets)
        assert dataset_outcome.materialized["roles/persona_training_split"] == sorted(keys), dataset_outcome.errors
        assert dataset_outcome.runs == 2  # 4 personas, 3 per run: one process start per chunk, not per persona
        steering_outcome = launch.backfill_outcome(instance, steering)
        assert steering_outcome.materialized["roles/steering_vector"] == sorted(steering_keys), steering_outcome.errors

        records = run_records(instance, steering)
        assert len(records) == 2 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        # The queue would launch both at once (max_concurrent_runs 8); the gpu pool (1 slot) must not.
        assert overlapping(records) == 1
        assert all(model_loads(instance, r.dagster_run.run_id) == 1 for r in records)
        # Launched by the daemon from the code location: the UI's job pages and timeline list them.
        assert all(r.dagster_run.remote_job_origin.location_name == launch.LOCATION_NAME for r in records)
        assert instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == 1
