"""The steering_vector asset in Dagster: one chunked run trains several personas on one model load."""

import dagster as dg
import pytest

from steering_assets.core.progress import failure_message
from steering_assets.definitions import build_definitions, persona_job_name, steering_job_name
from steering_assets.partitions.personas import sync_partitions
from steering_assets.steering.config import INTEROP_FILE, LOSS_CURVE_FILE, VECTOR_FILE
from tests.runner import contiguous_chunks, run_partition_chunks
from tests.world import SOURCE_MODEL

TINY = {"max_steps": 4, "eval_steps": 2, "save_steps": 2, "per_device_batch_size": 2, "max_length": 40, "warmup_steps": 0}
TINY_EVAL = {"coefficients": [0.0, 2.0], "n_prompts": 4, "max_new_tokens": 8, "held_out_rows": 20}
STEERING_CONFIG = {"ops": {"roles__steering_vector": {"config": TINY}, "roles__steering_eval": {"config": TINY_EVAL}}}
KEYS = [f"{SOURCE_MODEL}/chef", f"{SOURCE_MODEL}/detective"]
# 16 recorded replies a role over 8 questions: 4 questions stay out of both splits, for the evaluations.
SPLIT = {"ops": {"roles__persona_training_split": {"config": {"held_out_questions": 4}}}}


@pytest.fixture
def env(demo_workspace, tmp_path):
    artifacts = tmp_path / "artifacts"
    defs = build_definitions(str(demo_workspace.data_root), str(artifacts), str(demo_workspace.model_path))
    with dg.instance_for_test() as instance:
        sync_partitions(instance, demo_workspace.data_root)
        job = defs.resolve_job_def(persona_job_name("roles"))
        for key in KEYS:
            assert job.execute_in_process(instance=instance, partition_key=key, run_config=SPLIT).success
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


def test_a_backfill_over_every_role_skips_the_default_assistants_partition(env):
    """responses/default.jsonl is a role partition (its role vector is the axis's default side): a chunk that
    holds it builds its dataset, computes no split or steering for it (logged, and said in its event), and
    trains and evaluates the role beside it; alone in a run it is not materialised at all."""
    defs, instance, artifacts = env
    default, pirate = f"{SOURCE_MODEL}/default", f"{SOURCE_MODEL}/pirate"
    assert instance.get_dynamic_partitions("roles")[-2:] == [pirate, default]

    def latest_of(asset):
        records = instance.fetch_materializations(dg.AssetKey(["roles", asset]), limit=100).records
        found = {}
        for record in sorted(records, key=lambda r: r.storage_id):
            found[record.asset_materialization.partition] = record.asset_materialization.metadata
        return found

    alone = run_partition_chunks(defs, instance, persona_job_name("roles"), [[default]], run_config=SPLIT, progress=lambda _: None)
    assert alone[0].success and default in latest_of("persona_dataset") and default not in latest_of("persona_training_split")
    alone = run_partition_chunks(defs, instance, steering_job_name("roles"), [[default]], run_config=STEERING_CONFIG, progress=lambda _: None)
    assert alone[0].success and default not in latest_of("steering_vector")

    chunk = [[pirate, default]]
    outcomes = run_partition_chunks(defs, instance, persona_job_name("roles"), chunk, run_config=SPLIT, progress=lambda _: None)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    # The classifier the evaluation scores with, now with the pirate among its classes (the baseline is not one).
    classifier = dg.AssetKey(["roles", "persona_classifier"])
    assert defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance, asset_selection=[classifier]).success
    outcomes = run_partition_chunks(defs, instance, steering_job_name("roles"), chunk, run_config=STEERING_CONFIG, progress=lambda _: None)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    for asset in ("persona_training_split", "steering_vector", "persona_activation_vector", "steering_eval"):
        found = latest_of(asset)
        assert "not_computed" not in found[pirate], asset
        assert "a baseline role" in found[default]["not_computed"].value, asset
        assert not (artifacts / "roles" / asset / SOURCE_MODEL / "default").exists(), asset
    assert latest_of("steering_vector")[pirate]["vector_norm"].value > 0
    logs = [e.message for e in instance.all_logs(outcomes[0].run_id) if e.message]
    assert any("default: not computed: a baseline role" in m for m in logs)


def test_layer_outside_the_model_fails_the_run_with_a_clear_message(env):
    defs, instance, artifacts = env
    config = {"ops": {"roles__steering_vector": {"config": {**TINY, "layer": 12}}, "roles__steering_eval": {"config": TINY_EVAL}}}
    result = defs.resolve_job_def(steering_job_name("roles")).execute_in_process(
        instance=instance, partition_key=KEYS[0], run_config=config, raise_on_error=False
    )
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "layer 12 is outside the model" in failure_message(failure)
    assert not (artifacts / "roles" / "steering_vector").exists()


JUDGED = {"factors": [0.5, 2.0], "instructions": 4, "max_new_tokens": 6, "norm_rows": 8}


def steering_rater(prompt):
    """The judge server's answers to the 0-2 rating prompts: concept 2 (mostly), instruction 1 or 2 by the
    reply's length, fluency 2; a reply with fewer than 3 words gets words, not a digit (left unscored)."""
    from steering_assets.steering.ratings import FLUENCY_INSTRUCTION, INSTRUCTION_INSTRUCTION

    reply = prompt.rsplit("Reply: ", 1)[-1]
    if prompt.startswith(FLUENCY_INSTRUCTION):
        return [("The", 0.9), ("2", 0.1)] if len(reply) % 3 == 0 else [("2", 0.9), ("1", 0.1)]
    if prompt.startswith(INSTRUCTION_INSTRUCTION):
        return [("2", 0.8), ("1", 0.2)] if len(reply) > 40 else [("1", 0.7), ("0", 0.3)]
    return [("2", 0.6), ("1", 0.3), ("0", 0.1)]


def test_judged_evaluation_compares_methods_per_persona_and_reuses_its_judgments(demo_workspace, env, capsys):
    """steering_judged_eval on a chunk against a chat-completions server, then steering_method_comparison; a rerun
    asks the server nothing, and a lost artifact asks only for what was never scored."""
    import json
    import shutil

    from steering_assets.resources.judge import JudgeResource
    from tests.runner import run_partition_chunks
    from tests.vetting.fake_openai import FakeJudgeServer

    _, instance, artifacts = env
    with FakeJudgeServer(rater=steering_rater) as server:
        judge = JudgeResource(backend="openai", model="fake-judge", api_key="local-key", base_url=server.base_url, timeout=5)
        defs = build_definitions(str(demo_workspace.data_root), str(artifacts), str(demo_workspace.model_path), judge=judge)
        outcomes = run_partition_chunks(defs, instance, steering_job_name("roles"), [KEYS], run_config=STEERING_CONFIG,
                                        progress=lambda _: None)
        assert all(o.success for o in outcomes), [o.error for o in outcomes]
        everything = defs.resolve_implicit_global_asset_job_def()
        judged = dg.AssetKey(["roles", "steering_judged_eval"])
        config = {"ops": {"roles__steering_judged_eval": {"config": JUDGED}}}

        def materialize(key):
            assert everything.execute_in_process(instance=instance, asset_selection=[judged], partition_key=key,
                                                 run_config=config).success
            return latest(instance, "steering_judged_eval", key)

        settings = 3 * 2 + 2  # two vectors and a random direction x two factors, unsteered, prompted (the demo roles have system prompts)
        for key in KEYS:
            before = server.calls
            metadata = materialize(key)
            assert metadata["generations"].value == settings * 4 and metadata["judge_calls"].value == server.calls - before
            # The first persona asks all 3 x 24 judgments; the second shares some (the same unsteered reply to the
            # same instruction is the same instruction and fluency prompt), which the judgment cache answers.
            assert metadata["judge_calls"].value == 3 * settings * 4 if key == KEYS[0] else metadata["judge_calls"].value <= 3 * settings * 4
            table = metadata["methods"].value
            assert all(f"| {method} |" in table for method in ("trained", "activation", "random", "prompted", "unsteered"))
            assert metadata["prompted_system_prompt"].value.startswith("You are")
            assert metadata["judge"].value == "fake-judge"  # the steering judge defaults to the judge passed in
            assert metadata["residual_norm"].value > 0 and metadata["trained_norm_over_residual"].value > 0
            assert metadata["scores_by_factor"].value.startswith("![scores by factor](data:image/png;base64,")
            rows = json.loads((artifacts / "roles" / "steering_judged_eval" / key / "judged_evaluation.json").read_text())["table"]
            assert [row["method"] for row in rows] == ["trained", "activation", "random", "prompted", "unsteered"]
            by_method = {row["method"]: row for row in rows}
            for method in ("trained", "activation"):  # the effect that counts: the concept above the random direction's
                if "above_random" in by_method[method]:
                    assert by_method[method]["above_random"]["concept"] == pytest.approx(
                        by_method[method]["concept"] - by_method["random"]["concept"])
            for row in rows:  # the report half: 2 instructions, each reply rated or an item error
                assert row.get("n/a") or row["rated"] + row["item_errors"] == 2, row
                # 0 is possible: the untrained model loops, and degenerate text gets fluency 0.
                assert row.get("harmonic_mean") is None or 0 <= row["harmonic_mean"] <= 2
            assert any(f"{row['method']}_harmonic_mean" in metadata for row in rows)
        assert server.probes == 0  # 0-2 ratings need no number-scale probe
        comparison = dg.AssetKey(["roles", "steering_method_comparison"])
        assert everything.execute_in_process(instance=instance, asset_selection=[comparison]).success
        summary = instance.fetch_materializations(comparison, limit=1).records[0].asset_materialization.metadata
        assert summary["personas_judged"].value == 2
        assert sum(summary[f"wins_{m}"].value for m in ("trained", "activation", "prompted", "unsteered")) == 2
        assert all(key in summary["comparison"].value for key in KEYS)
        # What `steering-assets backfill roles --steering --judged` prints.
        from steering_assets.cli.reports import print_method_comparison
        from steering_assets.core.artifacts import ArtifactStore

        capsys.readouterr()
        print_method_comparison(ArtifactStore(artifacts), demo_workspace.data_root)
        printed = capsys.readouterr().out
        assert all(key in printed for key in KEYS) and "personas won: trained " in printed
        assert f"{SOURCE_MODEL}/pirate" not in printed  # never judged: no row

        # Nothing changed: the artifact is reused and the judge is not asked.
        calls = server.calls
        assert materialize(KEYS[0])["reused_existing_artifact"].value is True and server.calls == calls
        # The artifact lost: the replies are generated again (greedy: the same text), and only the
        # judgments that never had a score are asked again; the others come from the judgment cache.
        folder = artifacts / "roles" / "steering_judged_eval" / KEYS[0]
        first = json.loads((folder / "judged_evaluation.json").read_text())
        shutil.rmtree(folder)
        again = materialize(KEYS[0])
        assert again["reused_existing_artifact"].value is False
        assert 0 < again["judge_calls"].value == first["unscored_judgments"] == server.calls - calls < 3 * settings * 4
        assert json.loads((folder / "judged_evaluation.json").read_text())["table"] == first["table"]
