"""The code location end to end: asset graph, runs per partition, metadata, checks, bad partitions."""

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from steering_assets.core.progress import failure_message
from steering_assets.definitions import build_definitions, persona_job_name
from steering_assets.formats.rollouts import ROLES, PersonaRef
from steering_assets.partitions.personas import sync_partitions
from steering_assets.personas.assets import BUDGET_CHECK, SURVIVORS_CHECK
from steering_assets.personas.budget import SelectionConfig, chat_token_lengths, select_training_rows
from steering_assets.personas.dataset import build_persona_dataset
from steering_assets.personas.materialize import TRAIN_FILE, VALIDATION_FILE
from tests.world import SOURCE_MODEL


@pytest.fixture
def demo_defs(demo_workspace, tmp_path):
    artifacts = tmp_path / "artifacts"
    defs = build_definitions(str(demo_workspace.data_root), str(artifacts), str(demo_workspace.model_path))
    with dg.instance_for_test() as instance:
        sync_partitions(instance, demo_workspace.data_root)
        yield defs, instance, artifacts


def latest_metadata(instance, key, partition):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1
    ).records
    return records[0].asset_materialization.metadata


def test_code_location_loads_every_asset_without_heavy_imports():
    code = (
        "import sys, steering_assets.definitions as d;"
        "keys = sorted(k.to_user_string() for k in d.defs().resolve_asset_graph().get_all_asset_keys());"
        "print(keys); print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    per_kind = ["persona_activation_vector", "persona_classifier", "persona_dataset", "persona_rollouts",
                "persona_training_split", "steering_eval", "steering_eval_summary", "steering_judged_eval",
                "steering_method_comparison", "steering_vector"]
    expected = ["roles/baseline_dataset", "roles/baseline_rollouts"] + [f"{k}/{a}" for k in ("roles", "traits") for a in per_kind]
    expected += [f"concepts/{a}" for a in ("classifier_datasets", "feature_activation_graphs", "sentence_features", "top_features", "trait_classifiers")]
    expected += [f"vetting/{a}" for a in ("response_vetting", "scenario_files", "scenario_responses", "scenario_vetting")]
    expected += ["models/persona_model"] + [f"{k}/{a}" for k in ("roles", "traits") for a in ("generated_rollouts", "rollout_scores")]
    expected += ["roles/role_vector"] + [f"persona_space/{a}" for a in ("assistant_axis", "capping_config", "capping_eval", "persona_drift", "persona_pca")]
    assert out[0] == str(sorted(expected))
    assert out[1] == "False False"


def test_dagster_cli_validates_the_code_location(tmp_path):
    """What `dagster dev` does first: load the location from workspace.yaml with a real instance."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PERSONA_DATA_ROOT": "d", "PERSONA_ARTIFACT_ROOT": "a", "PERSONA_MODEL": "m",
           "PERSONA_CONCEPTS_ROOT": "c", "PERSONA_SAE_CONFIG": "s.json", "PERSONA_SCENARIOS_ROOT": "v", "OPENAI_API_KEY": "k"}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_bad_budget_config_is_refused_before_any_work(demo_defs):
    defs, instance, artifacts = demo_defs
    job = defs.resolve_job_def(persona_job_name("roles"))
    bad = {"ops": {"roles__persona_training_split": {"config": {"train_tokens": 0}}}}
    with pytest.raises(Exception, match="train_tokens"):
        job.execute_in_process(instance=instance, partition_key="SmolLM2-135M-Instruct.Q4_1/pirate", run_config=bad)
    assert not (artifacts / "roles" / "persona_training_split").exists()


def test_definitions_validate_and_partitions_line_up():
    defs = build_definitions("data", "artifacts", "model")
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for kind in ("roles", "traits"):
        split = graph.get(dg.AssetKey([kind, "persona_training_split"]))
        assert split.partitions_def.name == kind
        assert dg.AssetKey([kind, "persona_dataset"]) in split.parent_keys
    assert {j.name for j in defs.resolve_all_job_defs()} >= {persona_job_name("roles"), persona_job_name("traits")}


def test_one_persona_from_rollouts_to_split_with_metadata_and_checks(demo_defs, demo_workspace, tokenizer):
    defs, instance, artifacts = demo_defs
    # The gardener's judge gave some replies 1 or 2, so the selection drops rows as well as keeps them.
    key = f"{SOURCE_MODEL}/gardener"
    frame, _ = build_persona_dataset(PersonaRef(ROLES, SOURCE_MODEL, "gardener"), demo_workspace.data_root)
    kept, _ = select_training_rows(frame, SelectionConfig.defaults_for(ROLES))
    lengths = chat_token_lengths(tokenizer, kept["messages"].to_list())
    # Budgets the recorded replies can fill: half of the kept tokens for train, a quarter for validation.
    train_budget, validation_budget = sum(lengths) // 2, sum(lengths) // 4
    budgets = {"ops": {"roles__persona_training_split": {"config": {
        "train_tokens": train_budget, "validation_tokens": validation_budget}}}}
    job = defs.resolve_job_def(persona_job_name("roles"))
    result = job.execute_in_process(instance=instance, partition_key=key, run_config=budgets)
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks[BUDGET_CHECK].passed and checks[SURVIVORS_CHECK].passed

    dataset = latest_metadata(instance, ["roles", "persona_dataset"], key)
    responses = demo_workspace.data_root / SOURCE_MODEL / "responses" / "gardener.jsonl"
    assert dataset["dagster/row_count"].value == len(responses.read_text().splitlines()) == frame.height
    assert "█" in dataset["score_histogram"].value
    assert dataset["responses_without_score"].value == 0  # every recorded reply was judged, and its score joined
    split = latest_metadata(instance, ["roles", "persona_training_split"], key)
    # Train stops at the first row that no longer fits, so it is within one row of its budget.
    assert train_budget - max(lengths) < split["train_tokens"].value <= train_budget
    assert 0 < split["validation_tokens"].value <= validation_budget
    assert "below_threshold" in split["dropped_by_reason"].value
    assert split["kept_examples"].value < kept.height < frame.height
    folder = artifacts / "roles" / "persona_training_split" / SOURCE_MODEL / "gardener"
    assert split["path"].value == str(folder)
    assert pl.read_parquet(folder / TRAIN_FILE).height == split["train_rows"].value
    assert pl.read_parquet(folder / VALIDATION_FILE)["length"].sum() == split["validation_tokens"].value


def test_unreachable_budget_warns_and_empty_selection_errors(demo_defs):
    defs, instance, _ = demo_defs
    job = defs.resolve_job_def(persona_job_name("roles"))
    # The default 100,000-token train budget is far more than 16 recorded replies hold.
    result = job.execute_in_process(instance=instance, partition_key=f"{SOURCE_MODEL}/pirate")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks[BUDGET_CHECK].passed and checks[BUDGET_CHECK].severity == dg.AssetCheckSeverity.WARN
    assert re.fullmatch(r"\d+ of 100000 train tokens", checks[BUDGET_CHECK].description)
    assert checks[SURVIVORS_CHECK].passed

    strict = {"ops": {"roles__persona_training_split": {"config": {"min_score": 4}}}}
    result = job.execute_in_process(instance=instance, partition_key=f"{SOURCE_MODEL}/chef", run_config=strict, raise_on_error=False)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks[SURVIVORS_CHECK].passed
    assert checks[SURVIVORS_CHECK].severity == dg.AssetCheckSeverity.ERROR
    assert "0 examples kept" in checks[SURVIVORS_CHECK].description


def test_path_escaping_partition_key_is_rejected_and_writes_nothing(demo_defs, tmp_path):
    defs, instance, artifacts = demo_defs
    instance.add_dynamic_partitions("roles", ["SmolLM2-135M-Instruct.Q4_1/..", "../outside"])
    job = defs.resolve_job_def(persona_job_name("roles"))
    for key in ("SmolLM2-135M-Instruct.Q4_1/..", "../outside"):
        result = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "path separator or '..'" in failure_message(failure)
    assert not (tmp_path / "outside").exists()
    assert not artifacts.exists() or not any(artifacts.rglob("*.parquet"))


def test_malformed_rollouts_fail_the_partition_with_file_and_line(demo_workspace, tmp_path):
    data = tmp_path / "data"
    responses = data / "m" / "roles_240" / "responses"
    responses.mkdir(parents=True)
    (responses / "pirate.jsonl").write_text('{"label": "pos"\n')
    defs = build_definitions(str(data), str(tmp_path / "artifacts"), str(demo_workspace.model_path))
    with dg.instance_for_test() as instance:
        sync_partitions(instance, data)
        result = defs.resolve_job_def(persona_job_name("roles")).execute_in_process(
            instance=instance, partition_key="m/pirate", raise_on_error=False
        )
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert f"{responses / 'pirate.jsonl'}:1: malformed JSON" in failure_message(failure)
    assert not (tmp_path / "artifacts" / "roles" / "persona_dataset" / "m" / "pirate" / "dataset.parquet").exists()


def test_observing_rollouts_versions_every_partition_by_file_content(demo_workspace, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_workspace.data_root, data)
    defs = build_definitions(str(data), str(tmp_path / "artifacts"), str(demo_workspace.model_path))
    key = dg.AssetKey(["roles", "persona_rollouts"])

    def observe(instance):
        job = defs.resolve_implicit_global_asset_job_def()
        assert job.execute_in_process(instance=instance, asset_selection=[key]).success
        records = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=["SmolLM2-135M-Instruct.Q4_1/pirate", "SmolLM2-135M-Instruct.Q4_1/chef"]), limit=2
        ).records
        return {r.partition_key: r.asset_observation.tags["dagster/data_version"] for r in records}

    with dg.instance_for_test() as instance:
        sync_partitions(instance, data)
        before = observe(instance)
        assert set(before) == {"SmolLM2-135M-Instruct.Q4_1/pirate", "SmolLM2-135M-Instruct.Q4_1/chef"}
        with open(data / SOURCE_MODEL / "responses" / "pirate.jsonl", "a") as handle:
            handle.write("\n")  # same rows, different bytes: still a new version
        after = observe(instance)
    assert after["SmolLM2-135M-Instruct.Q4_1/pirate"] != before["SmolLM2-135M-Instruct.Q4_1/pirate"]
    assert after["SmolLM2-135M-Instruct.Q4_1/chef"] == before["SmolLM2-135M-Instruct.Q4_1/chef"]


def test_run_config_is_built_from_asset_keys_and_the_products_config_classes():
    from steering_assets.definitions import asset_run_config
    from steering_assets.personas.assets import TrainingSplitConfig
    from steering_assets.steering.assets import SteeringVectorConfig

    config = asset_run_config({("roles", "steering_vector"): SteeringVectorConfig(max_steps=3),
                               ("traits", "persona_training_split"): TrainingSplitConfig(min_score=60)})
    # The persona datasets are one multi-asset op; only the fields set are passed.
    assert config == {"ops": {"roles__steering_vector": {"config": {"max_steps": 3}},
                              "traits__persona_training_split": {"config": {"min_score": 60}}}}
    with pytest.raises(Exception, match="no_such_asset"):
        asset_run_config({("roles", "no_such_asset"): SteeringVectorConfig()})
