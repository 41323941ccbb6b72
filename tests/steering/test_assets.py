"""The steering_vector asset in Dagster: one chunked run trains several personas on one model load."""

import dagster as dg
import pytest

from partitions.personas import sync_partitions
from steering_assets.definitions import build_definitions, persona_job_name, steering_job_name
from steering_assets.runner import contiguous_chunks, failure_message, run_partition_chunks
from steering_assets.steering.config import INTEROP_FILE, LOSS_CURVE_FILE, VECTOR_FILE

TINY = {"max_steps": 4, "eval_steps": 2, "save_steps": 2, "per_device_batch_size": 2, "max_length": 40, "warmup_steps": 0}
TINY_EVAL = {"coefficients": [0.0, 2.0], "n_prompts": 4, "max_new_tokens": 8, "held_out_rows": 20}
STEERING_CONFIG = {"ops": {"roles__steering_vector": {"config": TINY}, "roles__steering_eval": {"config": TINY_EVAL}}}
KEYS = ["demo-qwen3-tiny/astronomer", "demo-qwen3-tiny/chef"]


@pytest.fixture
def env(demo_workspace, tmp_path):
    artifacts = tmp_path / "artifacts"
    defs = build_definitions(str(demo_workspace.data_root), str(artifacts), str(demo_workspace.model_path))
    with dg.instance_for_test() as instance:
        sync_partitions(instance, demo_workspace.data_root)
        job = defs.resolve_job_def(persona_job_name("roles"))
        for key in KEYS:
            budget = {"ops": {"roles__persona_training_split": {"config": {"train_tokens": 3000, "validation_tokens": 600}}}}
            assert job.execute_in_process(instance=instance, partition_key=key, run_config=budget).success
        everything = defs.resolve_implicit_global_asset_job_def()
        prerequisites = [dg.AssetKey(["roles", "baseline_dataset"]), dg.AssetKey(["roles", "persona_classifier"])]
        assert everything.execute_in_process(instance=instance, asset_selection=prerequisites).success
        yield defs, instance, artifacts


def latest(instance, asset, key):
    return instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["roles", asset]), asset_partitions=[key]), limit=1
    ).records[0].asset_materialization.metadata


def test_chunked_run_trains_evaluates_and_records_each_persona(env):
    defs, instance, artifacts = env
    config = STEERING_CONFIG
    chunks = contiguous_chunks(instance.get_dynamic_partitions("roles"), KEYS, 8)
    assert chunks == [KEYS]
    outcomes = run_partition_chunks(defs, instance, steering_job_name("roles"), chunks, run_config=config, progress=lambda _: None)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    norms = set()
    for key in KEYS:
        folder = artifacts / "roles" / "steering_vector" / key
        assert {VECTOR_FILE, INTEROP_FILE, LOSS_CURVE_FILE, "steering_config.json", "manifest.json"} <= {p.name for p in folder.iterdir()}
        assert {"control_vector.gguf", "lm_eval_steer.pt", "layer_stack.pt"} <= {p.name for p in folder.iterdir()}
        metadata = latest(instance, "steering_vector", key)
        assert metadata["trained_with_personas"].value == 2
        assert metadata["assistant_mask"].value == "generation_tags" and 0 < metadata["loss_token_share"].value < 1
        assert metadata["exports"].value == ["control_vector.gguf", "layer_stack.pt", "lm_eval_steer.pt"]
        assert metadata["loss_curve"].value.startswith("![loss curve](data:image/png;base64,")
        norms.add(metadata["vector_norm"].value)
        evaluation = latest(instance, "steering_eval", key)
        assert 0.0 <= evaluation["target_probability_steered"].value <= 1.0
        assert "coefficient" in evaluation["coefficient_sweep"].value
        assert -1.0 <= evaluation["cosine_with_activation_vector"].value <= 1.0
        activation = latest(instance, "persona_activation_vector", key)
        assert activation["layer"].value == 2 and "control_vector.gguf" in activation["exports"].value
    assert len(norms) == 2  # each partition shows its own vector, not the chunk's
    # Nothing changed: the second run reuses both vectors.
    outcomes = run_partition_chunks(defs, instance, steering_job_name("roles"), chunks, run_config=config, progress=lambda _: None)
    assert all(o.success for o in outcomes)
    for asset in ("steering_vector", "persona_activation_vector", "steering_eval"):
        assert latest(instance, asset, KEYS[0])["reused_existing_artifact"].value is True


def test_layer_outside_the_model_fails_the_run_with_a_clear_message(env):
    defs, instance, artifacts = env
    config = {"ops": {"roles__steering_vector": {"config": {**TINY, "layer": 12}}, "roles__steering_eval": {"config": TINY_EVAL}}}
    result = defs.resolve_job_def(steering_job_name("roles")).execute_in_process(
        instance=instance, partition_key=KEYS[0], run_config=config, raise_on_error=False
    )
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "layer 12 is outside the model" in failure_message(failure)
    assert not (artifacts / "roles" / "steering_vector").exists()
