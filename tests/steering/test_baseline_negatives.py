"""Negatives from the baseline rows inside each persona's own file (current persona-subspace trees),
from baseline files (assistant-axis, older persona-subspace trees), or both; never from nothing."""

import json
import shutil

import dagster as dg
import numpy as np
import pytest

from steering_assets.core.artifacts import ArtifactStore
from steering_assets.core.progress import failure_message
from steering_assets.definitions import build_definitions, persona_job_name, steering_job_name
from steering_assets.formats.rollouts import ROLES, TRAITS, PersonaRef
from steering_assets.models.errors import MissingBaselineError
from steering_assets.partitions.personas import sync_partitions
from steering_assets.personas.materialize import load_baseline_rows, load_training_split, materialize_persona_dataset
from steering_assets.steering.config import ACTIVATION_FILE
from steering_assets.steering.negatives import BASELINE_FILE, IN_FILE_ROWS, kind_negatives, persona_negatives
from tests.conftest import response_row, write_persona
from tests.runner import run_partition_chunks
from tests.world import SOURCE_MODEL

MODEL = SOURCE_MODEL
ROLE_NAMES = ["chef", "detective"]
KEYS = [f"{MODEL}/{name}" for name in ROLE_NAMES]
TINY = {"max_steps": 2, "eval_steps": 2, "save_steps": 2, "per_device_batch_size": 2, "max_length": 40, "warmup_steps": 0}
TINY_EVAL = {"coefficients": [0.0, 2.0], "n_prompts": 4, "max_new_tokens": 4, "held_out_rows": 10}
STEERING_CONFIG = {"ops": {"roles__steering_vector": {"config": TINY}, "roles__steering_eval": {"config": TINY_EVAL}}}
# 4 of the 8 recorded questions stay out of both splits, as in the demo.
SPLIT_CONFIG = {"ops": {"roles__persona_training_split": {"config": {"held_out_questions": 4}}}}


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def in_file_tree(demo_workspace, root, with_defaults=True):
    """The recorded roles as persona-subspace writes them today: each role file also holds 'default' rows
    (the recorded default assistant's replies, assistant-axis's responses/default.jsonl; prompt 0 is empty,
    so the writer put "\\n\\n" + question in the user turn), scored under default_p{i}_q{j}, and no baseline file."""
    source = demo_workspace.data_root / MODEL
    defaults = []
    for row in _lines(source / "responses" / "default.jsonl"):
        row = {**row, "label": "default"}
        if not row["system_prompt"]:
            row["conversation"] = [{"role": "user", "content": "\n\n" + row["question"]}, row["conversation"][-1]]
        defaults.append(row)
    assert {r["prompt_index"] for r in defaults} == {0, 1} and any(not r["system_prompt"] for r in defaults)
    for name in ROLE_NAMES:
        rows = _lines(source / "responses" / f"{name}.jsonl")
        scores = json.loads((source / "scores" / f"{name}.json").read_text())
        if with_defaults:
            rows += defaults
            scores.update({f"default_p{r['prompt_index']}_q{r['question_index']}": 0 for r in defaults})
        write_persona(root, ROLES.directory, name, rows, scores, model=MODEL)
    return len(defaults)


def _train_personas(defs, instance, data_root):
    sync_partitions(instance, data_root)
    job = defs.resolve_job_def(persona_job_name("roles"))
    for key in KEYS:
        assert job.execute_in_process(instance=instance, partition_key=key, run_config=SPLIT_CONFIG).success


def _latest(instance, asset, key=None):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["roles", asset]), asset_partitions=[key] if key else None), limit=1
    ).records
    return records[0].asset_materialization.metadata


def test_in_file_default_rows_are_the_negatives_of_vectors_classifier_and_eval(demo_workspace, tmp_path, tiny_model_factory, tokenizer):
    from steering_assets.steering.evaluation import assistant_mean_hidden

    data_root, artifacts = tmp_path / "data", tmp_path / "artifacts"
    n_defaults = in_file_tree(demo_workspace, data_root)
    defs = build_definitions(str(data_root), str(artifacts), str(demo_workspace.model_path))
    # The negatives' lineage is visible: each persona's dataset feeds its activation vector and evaluation.
    graph = defs.resolve_asset_graph()
    for asset in ("persona_activation_vector", "persona_classifier", "steering_eval"):
        assert dg.AssetKey(["roles", "persona_dataset"]) in graph.get(dg.AssetKey(["roles", asset])).parent_keys
    with dg.instance_for_test() as instance:
        _train_personas(defs, instance, data_root)
        everything = defs.resolve_implicit_global_asset_job_def()
        prerequisites = [dg.AssetKey(["roles", "baseline_dataset"]), dg.AssetKey(["roles", "persona_classifier"])]
        assert everything.execute_in_process(instance=instance, asset_selection=prerequisites).success
        assert _latest(instance, "baseline_dataset")["baseline_files"].value == 0
        classifier = _latest(instance, "persona_classifier")
        assert "<baseline>" in classifier["classes"].value
        assert classifier["baseline_sources"].value == IN_FILE_ROWS
        assert classifier["baseline_rows_by_source"].value == {IN_FILE_ROWS: 2 * n_defaults}

        outcomes = run_partition_chunks(defs, instance, steering_job_name("roles"), [KEYS], run_config=STEERING_CONFIG,
                                        progress=lambda _: None)
        assert all(o.success for o in outcomes), [o.error for o in outcomes]
        metadata = {key: (_latest(instance, "persona_activation_vector", key), _latest(instance, "steering_eval", key))
                    for key in KEYS}

    store = ArtifactStore(artifacts)
    model = tiny_model_factory()
    for key in KEYS:
        activation, evaluation = metadata[key]
        assert activation["baseline_sources"].value == IN_FILE_ROWS
        assert activation["baseline_rows_available"].value == n_defaults
        assert activation["baseline_rows_used"].value == min(256, n_defaults)
        assert f"roles/{key}" in activation["baseline_datasets"].value
        assert evaluation["baseline_sources"].value == IN_FILE_ROWS
        assert evaluation["baseline_prompt_questions"].value == TINY_EVAL["n_prompts"]
        # Reference: the persona's replies minus its own default rows (all of them: fewer than 256), at the vector's layer.
        ref = PersonaRef(ROLES, MODEL, key.split("/")[1])
        train = load_training_split(store, ref)[0]["messages"].to_list()
        defaults = load_baseline_rows(store, ref)
        assert defaults.height == n_defaults and set(defaults["label"]) == {"default"}
        assert all(m[0]["role"] == "user" and not m[0]["content"].startswith("\n") for m in defaults["messages"])
        layer = activation["layer"].value
        expected = (assistant_mean_hidden(model, tokenizer, train[:256], layer).mean(0)
                    - assistant_mean_hidden(model, tokenizer, defaults["messages"].to_list(), layer).mean(0))
        folder = artifacts / "roles" / "persona_activation_vector" / key
        np.testing.assert_allclose(np.load(folder / ACTIVATION_FILE), expected, rtol=1e-4, atol=1e-5)


def test_no_baseline_file_and_no_default_rows_fails_saying_what_was_expected(demo_workspace, tmp_path):
    data_root, artifacts = tmp_path / "data", tmp_path / "artifacts"
    in_file_tree(demo_workspace, data_root, with_defaults=False)
    defs = build_definitions(str(data_root), str(artifacts), str(demo_workspace.model_path))
    with dg.instance_for_test() as instance:
        _train_personas(defs, instance, data_root)
        everything = defs.resolve_implicit_global_asset_job_def()
        selection = [dg.AssetKey(["roles", "baseline_dataset"]), dg.AssetKey(["roles", "persona_classifier"])]
        result = everything.execute_in_process(instance=instance, asset_selection=selection, raise_on_error=False)
    failure = failure_message(next(e for e in result.all_events if e.is_step_failure))
    assert "no baseline rows to use as negatives" in failure and repr(MODEL) in failure
    assert "0_default.jsonl" in failure and "'default'" in failure and "include-default" in failure
    assert not (artifacts / "roles" / "persona_classifier").exists()
    with pytest.raises(MissingBaselineError, match=r"only labels \['pos'\]"):
        persona_negatives(ArtifactStore(artifacts), PersonaRef(ROLES, MODEL, "chef"))


def test_baseline_files_and_in_file_rows_are_both_used_and_counted(demo_workspace, tmp_path):
    """A trait's 'neutral' rows, a role's 'default' rows and the source model's baseline file."""
    data_root, store = tmp_path / "data", ArtifactStore(tmp_path / "artifacts")
    trait_rows = [response_row(label, p, q, answer=f"{label} {p} {q}") for label in ("pos", "neg", "neutral")
                  for p in range(2) for q in range(3)]
    trait_scores = {f"{'default' if r['label'] == 'neutral' else r['label']}_p{r['prompt_index']}_q{r['question_index']}": 50
                    for r in trait_rows}
    write_persona(data_root, TRAITS.directory, "curious", trait_rows, trait_scores, model=MODEL)
    write_persona(data_root, ROLES.directory, "chef", [response_row("pos", 0, q) for q in range(4)],
                  {f"pos_p0_q{q}": 3 for q in range(4)}, model=MODEL)
    # The recorded default assistant, where assistant-axis puts it: the source model's baseline file.
    baseline_file = data_root / MODEL / "responses" / "default.jsonl"
    baseline_file.parent.mkdir(parents=True)
    shutil.copy(demo_workspace.data_root / MODEL / "responses" / "default.jsonl", baseline_file)
    trait, role, baseline = PersonaRef(TRAITS, MODEL, "curious"), PersonaRef(ROLES, MODEL, "chef"), PersonaRef(ROLES, MODEL, "default")
    for ref in (trait, role):
        materialize_persona_dataset(ref, data_root, store)
    # Before the baseline file is materialised: the trait's own neutral rows only; the role has none.
    negatives = persona_negatives(store, trait)
    assert negatives.summary()["rows_by_source"] == {IN_FILE_ROWS: 6}
    assert sorted(c[-1]["content"] for c in negatives.conversations) == sorted(f"neutral {p} {q}" for p in range(2) for q in range(3))
    with pytest.raises(MissingBaselineError, match=f"roles/{MODEL}/chef"):
        persona_negatives(store, role)
    files = materialize_persona_dataset(baseline, data_root, store).details["rows"]
    assert files == len(_lines(baseline_file))
    negatives = persona_negatives(store, trait)
    assert negatives.summary()["sources"] == [BASELINE_FILE, IN_FILE_ROWS]
    assert negatives.summary()["rows_by_source"] == {BASELINE_FILE: files, IN_FILE_ROWS: 6}
    assert len(negatives.conversations) == files + 6
    assert persona_negatives(store, role).summary()["rows_by_source"] == {BASELINE_FILE: files}
    assert kind_negatives(store, [trait]).summary()["rows_available"] == files + 6
