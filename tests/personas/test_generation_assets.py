"""generated_rollouts -> rollout_scores -> persona_dataset on the real SmolLM2, from assistant-axis instruction files:
the instruction files become partitions, the generated and scored files are the ones the persona datasets read."""

import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from steering_assets.formats.rollouts import ROLES
from steering_assets.partitions.personas import sync_instruction_partitions

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real_world" / "instructions"


@pytest.fixture
def instructions(tmp_path):
    if not FIXTURE.is_dir():
        pytest.skip("../shared/fixtures/real_world/instructions is not present")
    root = tmp_path / "instructions"
    shutil.copytree(FIXTURE, root)
    return root


def assets(defs, *names):
    wanted = {dg.AssetKey(["roles", name]) for name in names}
    return [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and wanted & set(a.keys)]


def test_generate_score_and_build_the_dataset(smollm2, instructions, tmp_path, monkeypatch):
    from steering_assets.definitions import build_definitions
    from steering_assets.resources.judge import JudgeResource

    gguf = smollm2.card["source"]["files"][0]
    data, artifacts = tmp_path / "data", tmp_path / "artifacts"
    data.mkdir()
    judge = JudgeResource(backend="local", local_model=str(smollm2.folder), device="cpu")
    defs = build_definitions(str(data), str(artifacts), gguf, str(tmp_path), str(tmp_path / "saes.json"), str(tmp_path),
                             judge=judge, instructions_root=str(instructions))
    config = {"ops": {"roles__generated_rollouts": {"config": {"questions": 2, "max_new_tokens": 12, "temperature": 0.7}}}}
    with dg.instance_for_test() as instance:
        added = sync_instruction_partitions(instance, instructions, "SmolLM2-135M-Instruct.Q4_1")
        assert added["roles"] == [f"SmolLM2-135M-Instruct.Q4_1/{n}" for n in ("default", "librarian", "pirate")]
        assert added["traits"] == ["SmolLM2-135M-Instruct.Q4_1/optimistic"]
        key = "SmolLM2-135M-Instruct.Q4_1/pirate"
        result = dg.materialize(
            assets(defs, "generated_rollouts", "rollout_scores"),
            instance=instance, partition_key=key, run_config=config, resources=dict(defs.resources))
        assert result.success
        responses = data / "SmolLM2-135M-Instruct.Q4_1" / "responses" / "pirate.jsonl"
        rows = [json.loads(line) for line in responses.read_text().splitlines()]
        assert len(rows) == 5 * 2 and {r["label"] for r in rows} == {"pos"}
        assert rows[0]["conversation"][0] == {"role": "system", "content": rows[0]["system_prompt"]}
        assert all(r["conversation"][-1]["content"] for r in rows)
        meta = result.asset_materializations_for_node("roles__generated_rollouts")[0].metadata
        assert meta["generated"].value == 10 and meta["reused_from_cache"].value == 0
        scores = json.loads((data / "SmolLM2-135M-Instruct.Q4_1" / "scores" / "pirate.json").read_text())
        scored = result.asset_materializations_for_node("roles__rollout_scores")[0].metadata
        assert len(scores) == scored["scored"].value and scored["scored"].value + scored["unscored"].value == 10
        assert all(isinstance(v, int) and 0 <= v <= 3 for v in scores.values())
        assert set(scores) <= {f"pos_p{i}_q{j}" for i in range(5) for j in range(2)}
        # Materialised again: every reply comes from the cache.
        again = dg.materialize(assets(defs, "generated_rollouts"),
                               instance=instance, partition_key=key, run_config=config, resources=dict(defs.resources))
        meta = again.asset_materializations_for_node("roles__generated_rollouts")[0].metadata
        assert (meta["generated"].value, meta["reused_from_cache"].value) == (0, 10)
        # The persona dataset reads the generated files like downloaded ones.
        from steering_assets.formats.rollouts import PersonaRef
        from steering_assets.personas.dataset import build_persona_dataset

        frame, _ = build_persona_dataset(PersonaRef(ROLES, "SmolLM2-135M-Instruct.Q4_1", "pirate"), data)
        assert frame.height == 10 and frame.filter(pl.col("extract_score").is_not_null()).height == len(scores)
        # The default assistant's partition (in any backfill of every role): generated, and not scored, not failed.
        default = dg.materialize(assets(defs, "generated_rollouts", "rollout_scores"), instance=instance,
                                 partition_key="SmolLM2-135M-Instruct.Q4_1/default", run_config=config,
                                 resources=dict(defs.resources))
        assert default.success
        meta = default.asset_materializations_for_node("roles__rollout_scores")[0].metadata
        assert meta["scored"].value == 0 and "baseline role" in meta["not_scored"].value
        assert (data / "SmolLM2-135M-Instruct.Q4_1" / "responses" / "default.jsonl").is_file()
        assert not (data / "SmolLM2-135M-Instruct.Q4_1" / "scores" / "default.json").exists()


def test_a_partition_of_another_model_is_refused(smollm2, instructions, tmp_path):
    from steering_assets.definitions import build_definitions

    defs = build_definitions(str(tmp_path), str(tmp_path / "a"), smollm2.card["source"]["files"][0], instructions_root=str(instructions))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("roles", ["gemma-2-27b/pirate"])
        result = dg.materialize(assets(defs, "generated_rollouts"),
                                instance=instance, partition_key="gemma-2-27b/pirate", resources=dict(defs.resources), raise_on_error=False)
        assert not result.success
        (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert "holds rollouts of 'gemma-2-27b', but the persona model is 'SmolLM2-135M-Instruct.Q4_1'" in str(failure.event_specific_data.error)
