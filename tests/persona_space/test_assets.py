"""Persona space in Dagster: role vectors per partition, fan-ins that read stored vectors only, a new role costs one role."""

import json
import shutil

import dagster as dg
import numpy as np
import pytest
import torch

from steering_assets.core.settings import Settings
from steering_assets.definitions import build_definitions, persona_job_name
from steering_assets.formats.rollouts import ROLES, PersonaRef
from steering_assets.partitions.personas import sync_partitions
from steering_assets.persona_space.assets import (
    AXIS_KEY,
    CAPPING_EVAL_KEY,
    CAPPING_KEY,
    DRIFT_KEY,
    PCA_KEY,
    ROLE_VECTOR_KEY,
)
from steering_assets.persona_space.materialize import RoleVectorSettings
from tests.world import SOURCE_MODEL

ROLE_CONFIG = {"ops": {"roles__role_vector": {"config": {"min_replies": 4, "batch_size": 4, "min_score": 2}}},
               "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
FANIN_CONFIG = {"ops": {"persona_space__persona_pca": {"config": {"n_components": 2}},
                        "persona_space__capping_config": {"config": {"layers": [2, 3]}},
                        "persona_space__capping_eval": {"config": {"questions_per_role": 1, "neutral_prompts": 1, "neutral_rows": 4,
                                                                   "max_new_tokens": 4, "addition_factors": [0.25, 0.5]}}}}


@pytest.fixture
def env(demo_workspace, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_workspace.data_root, data)
    artifacts = tmp_path / "artifacts"
    conversations = tmp_path / "conversations"
    conversations.mkdir()
    (conversations / "drift.jsonl").write_text(
        '[{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi, how can I help?"}, '
        '{"role": "user", "content": "Be a pirate now."}, {"role": "assistant", "content": "Arr, matey, the sea!"}]\n')
    defs = build_definitions(settings=Settings(data_root=str(data), artifact_root=str(artifacts), model=str(demo_workspace.model_path),
                                               conversations_root=str(conversations), judge_backend="likelihood",
                                               judge_local_model=str(demo_workspace.model_path)))
    with dg.instance_for_test() as instance:
        sync_partitions(instance, data)
        # The recorded rollouts' responses/default.jsonl (assistant-axis's layout) is the default assistant's partition.
        assert f"{SOURCE_MODEL}/default" in instance.get_dynamic_partitions("roles")
        job = defs.resolve_job_def(persona_job_name("roles"))
        for role in ("chef", "detective", "pirate"):
            assert job.execute_in_process(instance=instance, partition_key=f"{SOURCE_MODEL}/{role}").success
        everything = defs.resolve_implicit_global_asset_job_def()
        assert everything.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(["roles", "baseline_dataset"])]).success
        yield defs, instance, artifacts, data


def _count_forwards(monkeypatch):
    import steering_assets.models.residual as residual

    calls = []
    original = residual.block_outputs

    def counting(model, layers, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(model, layers, **kwargs)

    monkeypatch.setattr(residual, "block_outputs", counting)
    return calls


def _materialize(defs, instance, keys, partition=None, config=None):
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=keys, partition_key=partition, run_config=config or {},
                                    raise_on_error=False)
    return result


def test_a_new_role_costs_one_roles_forward_passes_and_the_fan_ins_read_only_stored_vectors(env, monkeypatch):
    defs, instance, artifacts, data = env
    for role in ("default", "chef", "detective"):
        assert _materialize(defs, instance, [ROLE_VECTOR_KEY], f"{SOURCE_MODEL}/{role}", ROLE_CONFIG).success
    assert _materialize(defs, instance, [AXIS_KEY], config=FANIN_CONFIG).success
    first = torch.load(artifacts / "persona_space" / "assistant_axis" / SOURCE_MODEL / "assistant_axis.pt", weights_only=True)
    assert (first["n_default"], first["n_roles"]) == (1, 2)

    calls = _count_forwards(monkeypatch)
    assert _materialize(defs, instance, [ROLE_VECTOR_KEY], f"{SOURCE_MODEL}/pirate", ROLE_CONFIG).success
    pirate = instance.fetch_materializations(ROLE_VECTOR_KEY, limit=1).records[0].asset_materialization.metadata
    replies = pirate["replies"].value
    assert calls == [4] * (replies // 4) + ([replies % 4] if replies % 4 else [])  # the pirate's replies, in batches of 4
    forwards_for_one_role = len(calls)
    # The fan-ins never read a rollout: remove them all, and they still run.
    shutil.rmtree(data)
    assert _materialize(defs, instance, [AXIS_KEY, PCA_KEY], config=FANIN_CONFIG).success
    assert len(calls) == forwards_for_one_role
    axis = torch.load(artifacts / "persona_space" / "assistant_axis" / SOURCE_MODEL / "assistant_axis.pt", weights_only=True)
    assert (axis["n_default"], axis["n_roles"]) == (1, 3)
    vectors = {r: torch.load(artifacts / "roles" / "role_vector" / SOURCE_MODEL / r / f"{r}.pt", weights_only=True)
               for r in ("default", "chef", "detective", "pirate")}
    assert vectors["pirate"]["type"] == "pos_3" and vectors["default"]["type"] == "mean" and vectors["chef"]["role"] == "chef"
    expected = vectors["default"]["vector"] - torch.stack([vectors[r]["vector"] for r in ("chef", "detective", "pirate")]).mean(0)
    assert torch.allclose(axis["axis"], expected, atol=1e-5)
    pca = instance.fetch_materializations(PCA_KEY, limit=1).records[0].asset_materialization.metadata
    assert 0 <= pca["pc1_axis_cosine"].value <= 1 and pca["variance_explained"].value.startswith("![variance](data:image/png")


def test_capping_config_and_drift_materialise_from_the_axis(env):
    defs, instance, artifacts, _ = env
    for role in ("default", "chef", "pirate"):
        assert _materialize(defs, instance, [ROLE_VECTOR_KEY], f"{SOURCE_MODEL}/{role}", ROLE_CONFIG).success
    result = _materialize(defs, instance, [AXIS_KEY, CAPPING_KEY, DRIFT_KEY], config=FANIN_CONFIG)
    assert result.success
    config = torch.load(artifacts / "persona_space" / "capping_config" / SOURCE_MODEL / "capping_config.pt", weights_only=False)
    assert [e["id"] for e in config["experiments"]] == ["layers_2:3-p0.25"] and sorted(config["vectors"]) == ["layer_2", "layer_3"]
    drift = instance.fetch_materializations(DRIFT_KEY, limit=1).records[0].asset_materialization.metadata
    assert drift["layer"].value == 3 and drift["conversations"].value == 1 and np.isfinite(drift["floor"].value)
    assert "turns below the floor" in drift["turns"].value and drift["skipped_unchanged"].value is False
    # Nothing it depends on changed: the rerun reuses the stored trajectories (no forward pass).
    assert _materialize(defs, instance, [DRIFT_KEY], config=FANIN_CONFIG).success
    again = instance.fetch_materializations(DRIFT_KEY, limit=1).records[0].asset_materialization.metadata
    assert again["skipped_unchanged"].value is True and again["turns"].value == drift["turns"].value

    # Capping beside addition, rated as the steering evaluation rates its methods, with its two checks.
    assert _materialize(defs, instance, [CAPPING_EVAL_KEY], config=FANIN_CONFIG).success
    evaluation = instance.fetch_materializations(CAPPING_EVAL_KEY, limit=1).records[0].asset_materialization.metadata
    table = evaluation["methods_all_prompts"].value
    assert table.startswith("| method | concept (role) | instruction | fluency | assistant score | generations |")
    assert all(f"| {m} |" in table for m in ("unsteered", "capped", "addition@0.25", "addition@0.5"))
    assert "role-play" in evaluation["samples"].value and evaluation["perplexity_ratio"].value > 0
    for check in ("capping_moves_toward_default", "capping_keeps_neutral_text"):
        [record] = instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(CAPPING_EVAL_KEY, check), limit=1)
        assert record.status.value in ("SUCCEEDED", "FAILED"), check  # evaluated (WARN severity: the run succeeds either way)
    stored = json.loads((artifacts / "persona_space" / "capping_eval" / SOURCE_MODEL / "capping_eval.json").read_text())
    # One role-play and one multi-turn prompt for each role the axis was computed from.
    assert [(s["role"], s["kind"]) for s in stored["samples"]] == [
        ("chef", "role-play"), ("chef", "multi-turn"), ("pirate", "role-play"), ("pirate", "multi-turn")]
    assert set(stored["samples"][0]["capped"]) >= {"reply", "degenerate"}


def test_the_axis_refuses_a_role_vector_from_another_model_naming_both(env):

    defs, instance, artifacts, _ = env
    for role in ("default", "chef"):
        assert _materialize(defs, instance, [ROLE_VECTOR_KEY], f"{SOURCE_MODEL}/{role}", ROLE_CONFIG).success
    manifest_path = artifacts / "roles" / "role_vector" / SOURCE_MODEL / "chef" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["details"]["model"] = "other-model@abc"
    manifest_path.write_text(json.dumps(manifest))
    result = _materialize(defs, instance, [AXIS_KEY])
    assert not result.success
    message = str([e for e in result.all_events if e.is_step_failure][0].event_specific_data.error)
    assert "computed with model 'other-model@abc'" in message and "tiny-qwen3" in message
    assert not (artifacts / "persona_space" / "assistant_axis" / SOURCE_MODEL / "manifest.json").exists()


def test_the_axis_says_it_needs_the_default_partition(env):
    defs, instance, artifacts, _ = env
    assert _materialize(defs, instance, [ROLE_VECTOR_KEY], f"{SOURCE_MODEL}/chef", ROLE_CONFIG).success
    result = _materialize(defs, instance, [AXIS_KEY])
    message = str([e for e in result.all_events if e.is_step_failure][0].event_specific_data.error)
    assert "needs the default assistant's vector" in message
    assert not (artifacts / "persona_space" / "assistant_axis" / SOURCE_MODEL).exists()


def test_without_a_baseline_file_the_default_vector_averages_the_role_files_default_rows(demo_workspace, tmp_path, monkeypatch):
    """persona-subspace writes each role's file with 'default' rows (include-default, its default) and no baseline file:
    the default partition appears, has no dataset of its own, and its role vector averages the roles' default rows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steering_assets.core.artifacts import ArtifactStore
    from steering_assets.models.generation import supports_system_role
    from steering_assets.persona_space.materialize import default_rows, role_conversations
    from steering_assets.persona_space.role_vectors import reply_activations
    from tests.personas.test_real_world_rollouts import persona_subspace_tree
    from tests.runner import run_partition_chunks

    data, artifacts = tmp_path / "data", tmp_path / "artifacts"
    persona_subspace_tree(data, ["chef", "pirate"], model="qwen-3-32b", questions=3)
    defs = build_definitions(settings=Settings(data_root=str(data), artifact_root=str(artifacts), model=str(demo_workspace.model_path)))
    config = {"ops": {"roles__role_vector": {"config": {"min_replies": 1, "min_score": 0, "batch_size": 4}}}}
    with dg.instance_for_test() as instance:
        sync_partitions(instance, data)
        keys = instance.get_dynamic_partitions("roles")
        assert keys == ["qwen-3-32b/chef", "qwen-3-32b/pirate", "qwen-3-32b/default"]
        outcomes = run_partition_chunks(defs, instance, persona_job_name("roles"), [keys], progress=lambda _: None)
        assert all(o.success for o in outcomes), [o.error for o in outcomes]
        event = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["roles", "persona_dataset"]), asset_partitions=["qwen-3-32b/default"]), limit=1)
        assert "'default' rows inside each role's persona_dataset" in event.records[0].asset_materialization.metadata["not_computed"].value
        assert _materialize(defs, instance, [ROLE_VECTOR_KEY], "qwen-3-32b/default", config).success
        metadata = instance.fetch_materializations(ROLE_VECTOR_KEY, limit=1).records[0].asset_materialization.metadata
        assert metadata["replies"].value == 2 * 6 and metadata["type"].value == "mean"  # 2 prompts x 3 questions a role
        assert "from the 'default' rows of 2 role datasets" in metadata["selection"].value["rule"]
    # The vector is the mean of per-reply means over exactly those rows (the reference: the same rows, read directly).
    store = ArtifactStore(artifacts)
    ref = PersonaRef.from_partition_key(ROLES, "qwen-3-32b/default")
    frame, prints, _ = default_rows(store, ref)
    assert frame.height == 12 and set(frame["label"].to_list()) == {"default"} and len(prints) == 2
    # Role by role in name order up to the cap: a role added after it is reached never changes the default vector.
    monkeypatch.setattr("steering_assets.persona_space.materialize.IN_FILE_DEFAULT_ROWS", 6)
    capped, capped_prints, source = default_rows(store, ref)
    assert capped.height == 6 and capped_prints == prints[:1] and "of 1 role datasets" in source
    tokenizer = AutoTokenizer.from_pretrained(demo_workspace.model_path)
    model = AutoModelForCausalLM.from_pretrained(demo_workspace.model_path).eval()
    conversations, _ = role_conversations(store, ref, RoleVectorSettings(), supports_system_role(tokenizer))
    expected = reply_activations(model, tokenizer, conversations, batch_size=4).mean()
    stored = torch.load(artifacts / "roles" / "role_vector" / "qwen-3-32b" / "default" / "default.pt", weights_only=True)
    assert torch.allclose(stored["vector"], torch.from_numpy(expected), atol=1e-5)
