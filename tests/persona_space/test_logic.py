"""Persona space's logic against reference values: the axis formula, PCA, the capping formula, per-prefix drift."""

import json

import numpy as np
import pytest
import torch

from steering_assets.persona_space.axis import AxisError, compute_axis, load_axis_file
from steering_assets.persona_space.capping import (
    CappingConfigError,
    plan_from_axis,
    read_capping_config,
    save_capping_config,
)
from steering_assets.persona_space.drift import ConversationFormatError, read_conversations, turn_projections, turn_runs
from steering_assets.persona_space.role_vectors import RoleVectorError, reply_activations
from steering_assets.persona_space.space import persona_pca


def _vectors(n_roles=6, layers=3, width=8, seed=0):
    rng = np.random.default_rng(seed)
    return {f"role{i}": rng.normal(size=(layers, width)).astype(np.float32) for i in range(n_roles)}, rng.normal(size=(layers, width)).astype(np.float32)


def test_axis_is_default_mean_minus_role_mean_and_round_trips_in_assistant_axis_layout(tmp_path):
    roles, default = _vectors()
    axis, _ = compute_axis([("default", default, True)] + [(k, v, False) for k, v in roles.items()])
    # assistant-axis pipeline/5_axis.py: stack, mean, subtract.
    reference = torch.stack([torch.from_numpy(default)]).mean(0) - torch.stack([torch.from_numpy(v) for v in roles.values()]).mean(0)
    assert torch.allclose(torch.from_numpy(axis.axis), reference, atol=1e-6)
    path = tmp_path / "assistant_axis.pt"
    axis.save(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)  # what their load_axis reads
    assert sorted(payload) == sorted(["axis", "default_mean", "role_mean", "n_default", "n_roles"])
    assert torch.equal(payload["axis"], torch.from_numpy(axis.axis)) and (payload["n_default"], payload["n_roles"]) == (1, 6)
    assert np.array_equal(load_axis_file(path).axis, axis.axis)


def test_axis_refuses_a_missing_default_and_a_vector_of_another_shape():
    roles, default = _vectors()
    with pytest.raises(AxisError, match="needs the default assistant's vector"):
        compute_axis([(k, v, False) for k, v in roles.items()])
    with pytest.raises(RoleVectorError, match=r"bad\.pt: role vector has shape \(3, 9\), expected \(3, 8\)"):
        from steering_assets.persona_space.axis import AxisAccumulator

        accumulator = AxisAccumulator()
        accumulator.add("default", default, True)
        accumulator.add("odd", np.zeros((3, 9)), False, where="bad.pt")


def test_pca_matches_sklearn_on_mean_centred_vectors_and_aligns_pc1_with_the_axis():
    from sklearn.decomposition import PCA

    roles, default = _vectors(n_roles=7)
    names = list(roles)
    matrix = np.stack([roles[n][1] for n in names])
    axis_row = default[1] - matrix.mean(0)
    space = persona_pca(names, matrix, axis_row, layer=1, n_components=3)
    reference = PCA(n_components=3).fit(matrix - matrix.mean(0))
    assert np.allclose(space.variance_explained, reference.explained_variance_ratio_, atol=1e-6)
    assert np.allclose(np.abs(space.components @ reference.components_.T), np.eye(3), atol=1e-5)
    unit = axis_row / np.linalg.norm(axis_row)
    assert space.pc1_axis_cosine == pytest.approx(abs(float(reference.components_[0] @ unit)), abs=1e-6) and space.pc1_axis_cosine >= 0
    assert space.ranked_on_axis()[0][1] == pytest.approx(float(max(matrix @ unit)), rel=1e-5)
    with pytest.raises(RoleVectorError, match=r"PCA with 9 components needs at least 10 role vectors .*; 7 have been materialised"):
        persona_pca(names, matrix, axis_row, layer=1, n_components=9)
    # Centred on their mean, 7 roles span 6 directions: a 7th component would be all zeros.
    with pytest.raises(RoleVectorError, match="PCA with 7 components needs at least 8 role vectors"):
        persona_pca(names, matrix, axis_row, layer=1, n_components=7)
    assert len(persona_pca(names, matrix, axis_row, layer=1, n_components=6).variance_explained) == 6


@torch.no_grad()
def test_capping_hook_is_the_formula_on_the_block_output_and_bitwise_identity_when_nothing_is_capped(tiny_model_factory, tokenizer):
    from steering_assets.models.capping import Cap, attach_capping
    from steering_assets.models.residual import block_outputs

    model = tiny_model_factory()
    batch = tokenizer(["Ahoy, the sea is calm today.", "Cook the pasta well."], return_tensors="pt", padding=True)
    plain = block_outputs(model, [1, 2], stop_early=False, **batch)
    direction = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    unit = direction / direction.norm()
    tau = float((plain[1] @ unit).median())
    with attach_capping(model, [Cap(1, direction, tau)]) as handle:
        capped = block_outputs(model, [1], stop_early=False, **batch)[1]
        assert handle.total_capped > 0
    h = plain[1]
    expected = h - torch.clamp(h @ unit - tau, min=0).unsqueeze(-1) * unit
    assert torch.allclose(capped, expected, atol=1e-5)
    orthogonal = lambda x: x - (x @ unit).unsqueeze(-1) * unit  # noqa: E731
    assert torch.allclose(orthogonal(capped), orthogonal(h), atol=1e-5)
    assert float((capped @ unit).max()) <= tau + 1e-4
    logits = model(**batch).logits
    with attach_capping(model, [Cap(1, direction, 1e9), Cap(2, -direction, 1e9)]) as handle:
        assert torch.equal(model(**batch).logits, logits) and handle.total_capped == 0


def test_capping_config_is_read_back_as_assistant_axis_builds_its_steerer_and_refuses_another_layer_count(tmp_path):
    axis = np.random.default_rng(1).normal(size=(6, 8)).astype(np.float32)
    projections = {3: np.linspace(-2, 4, 101), 4: np.linspace(0, 10, 101)}
    plan = plan_from_axis(axis, projections, 0.25)
    assert plan.experiment_id == "layers_3:4-p0.25" and plan.taus == pytest.approx((-(-0.5), -2.5))
    path = tmp_path / "capping_config.pt"
    save_capping_config(plan, path, n_layers=6, hidden_size=8, model="m")
    config = torch.load(path, map_location="cpu", weights_only=False)
    # assistant-axis's build_capping_steerer: find the experiment by id, then each intervention's vector and cap.
    experiment = next(e for e in config["experiments"] if e["id"] == "layers_3:4-p0.25")
    theirs = [(config["vectors"][i["vector"]]["layer"], config["vectors"][i["vector"]]["vector"], float(i["cap"])) for i in experiment["interventions"]]
    assert [t[0] for t in theirs] == [3, 4] and [t[2] for t in theirs] == pytest.approx(list(plan.taus))
    assert torch.allclose(theirs[0][1], -torch.from_numpy(axis[3]) / np.linalg.norm(axis[3]))
    read = read_capping_config(path, 6, 8, "layers_3:4-p0.25")
    assert read.layers == (3, 4) and np.allclose(read.directions, plan.directions) and read.floor(3) == pytest.approx(-0.5)
    with pytest.raises(CappingConfigError, match="written for a model with 6 decoder layers; this model has 30"):
        read_capping_config(path, 30, 8)
    with pytest.raises(CappingConfigError, match=r"no experiment 'p9'; it has \['layers_3:4-p0.25'\]"):
        read_capping_config(path, 6, 8, "p9")


def test_conversation_files_must_alternate_and_name_the_file_and_line(tmp_path):
    (tmp_path / "chats.jsonl").write_text(
        json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]) + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}) + "\n")
    with pytest.raises(ConversationFormatError, match=r"chats\.jsonl:2: message 1 is 'user' where 'assistant' was expected"):
        read_conversations(tmp_path)
    assert turn_runs([0, 1, 1, 0, 0, 1, 0, 1]) == [(1, 3), (5, 6), (7, 8)]


@torch.no_grad()
def test_drift_projection_of_each_turn_equals_a_per_prefix_forward(tiny_model_factory, tokenizer, tmp_path):
    from steering_assets.models.assistant_mask import reply_token_masks
    from steering_assets.models.residual import block_outputs

    model = tiny_model_factory()
    chat = [{"role": "user", "content": "Tell me about ships."}, {"role": "assistant", "content": "Ships sail the sea."},
            {"role": "user", "content": "And treasure?"}, {"role": "assistant", "content": "Gold, arr, buried deep."}]
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "pirate-chat", "messages": chat}) + "\n")
    conversations = read_conversations(tmp_path)
    unit = np.random.default_rng(0).normal(size=model.config.hidden_size)
    unit /= np.linalg.norm(unit)
    [projections] = turn_projections(model, tokenizer, conversations, 2, unit)
    assert len(projections) == 2
    # Reference: each turn through its own prefix forward (a causal model sees the same context).
    ids, masks = reply_token_masks(tokenizer, [chat], 4096)
    for (start, end), value in zip(turn_runs(masks[0]), projections):
        hidden = block_outputs(model, [2], input_ids=torch.tensor([ids[0][:end]]))[2][0, start:end].float()
        assert value == pytest.approx(float((hidden @ torch.tensor(unit, dtype=torch.float32)).mean()), abs=1e-4)


def test_role_vector_rows_are_the_mean_of_per_reply_means_at_every_layer(tiny_model_factory, tokenizer, demo_conversations):
    from steering_assets.steering.evaluation import assistant_mean_hidden

    model = tiny_model_factory()
    conversations = demo_conversations("pirate", 5)
    sums = reply_activations(model, tokenizer, conversations, batch_size=2)
    assert sums.n_replies == 5 and sums.mean().shape == (model.config.num_hidden_layers, model.config.hidden_size)
    for layer in range(model.config.num_hidden_layers):
        reference = assistant_mean_hidden(model, tokenizer, conversations, layer).mean(0)
        assert np.allclose(sums.mean()[layer], reference, atol=1e-4)


def test_capping_evaluation_leaves_every_reply_unchanged_when_nothing_is_capped(tiny_model_factory, tokenizer, demo_conversations):
    from steering_assets.judge.likelihood import LikelihoodJudge
    from steering_assets.persona_space.capping import CappingPlan
    from steering_assets.persona_space.capping_eval import CappingEvalSettings, drift_prompts, evaluate_capping

    model = tiny_model_factory()
    width = model.config.hidden_size
    rows = [{"question": c[0]["content"], "messages": c} for c in demo_conversations("pirate", 6)]
    prompts = drift_prompts("pirate", "You are a pirate.", rows, 2)
    assert [p.kind for p in prompts] == ["role-play", "role-play", "multi-turn", "multi-turn"]
    unit = np.eye(width, dtype=np.float32)[:1]
    judge = LikelihoodJudge(model, tokenizer, "tiny")
    settings = CappingEvalSettings(max_new_tokens=6, addition_factors=(0.25, 4.0))
    never = CappingPlan("never", (2,), unit, (1e9,))
    result = evaluate_capping(model, tokenizer, never, unit[0], 1.0, prompts, ["How are you?"], demo_conversations("chef", 2),
                              judge, settings)
    assert list(result.replies) == settings.methods() == ["unsteered", "capped", "addition@0.25", "addition@4"]
    assert result.replies["capped"] == result.replies["unsteered"] and result.capped_positions == [0, 0, 0, 0]
    # Rated as the judged steering evaluation rates a generation: the same three ratings of the same reply.
    assert result.ratings["capped"] == result.ratings["unsteered"]
    table = {row["method"]: row for row in result.table(prompts)}
    assert {**table["capped"], "method": "unsteered"} == table["unsteered"] and table["capped"]["rated"] + table["capped"]["item_errors"] == 4
    assert len(result.table(prompts, "multi-turn")) == 4 and result.table(prompts, "multi-turn")[0]["rated"] <= 2
    assert result.neutral[0]["equal"] and result.neutral[0]["capped_positions"] == 0
    assert result.perplexity["capped"] == result.perplexity["unsteered"]
    always = CappingPlan("always", (2,), unit, (-1e9,))
    capped = evaluate_capping(model, tokenizer, always, unit[0], 1.0, prompts[:1], [], demo_conversations("chef", 2), judge, settings)
    assert capped.capped_positions[0] > 0


def test_a_capping_config_as_assistant_axis_publishes_it_is_read_with_its_other_interventions_named(tmp_path):
    """Their file: bfloat16 vectors, experiments that mix capping with other interventions, no layer count of ours."""
    vectors = {f"layer_{layer}": {"layer": layer, "vector": torch.randn(8, dtype=torch.bfloat16)} for layer in (4, 5)}
    experiments = [
        {"id": "layers_4:5-p0.5", "interventions": [{"vector": "layer_4", "cap": -1.5}, {"vector": "layer_5", "cap": -2.0}]},
        {"id": "mixed", "interventions": [{"vector": "layer_4", "cap": -1.0}, {"vector": "layer_5", "coeff": 2.0}]},
    ]
    path = tmp_path / "capping_config.pt"
    torch.save({"vectors": vectors, "experiments": experiments}, path)
    plan = read_capping_config(path, 6, 8, "layers_4:5-p0.5")
    unit = vectors["layer_5"]["vector"].float() / vectors["layer_5"]["vector"].float().norm()
    assert plan.layers == (4, 5) and plan.taus == (-1.5, -2.0) and np.allclose(plan.directions[1], unit.numpy(), atol=1e-6)
    said = []
    mixed = read_capping_config(path, 6, 8, "mixed", log=said.append)
    assert mixed.layers == (4,) and len(said) == 1 and "has no 'cap'; not applied" in said[0]
    with pytest.raises(CappingConfigError, match=r"capping_config.pt: vector 'layer_4' is for layer 4; this model has layers 0-3"):
        read_capping_config(path, 4, 8)
    with pytest.raises(CappingConfigError, match="vector 'layer_4' has 8 entries; this model's hidden size is 16"):
        read_capping_config(path, 6, 16)


def test_rollout_writer_conversations_with_a_system_turn_are_read_for_drift(tmp_path):
    # The rollout writers' line shape: a "conversation" field whose first turn may be the system's.
    line = {"system_prompt": "You are a pirate.", "label": "pos", "question": "Hi?",
            "conversation": [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi?"},
                             {"role": "assistant", "content": "Arr!"}]}
    (tmp_path / "pirate.jsonl").write_text(json.dumps(line) + "\n\n")
    [conversation] = read_conversations(tmp_path)
    assert conversation.assistant_turns == 1 and conversation.messages[0]["role"] == "system" and conversation.id == "pirate:1"


def test_capping_eval_ratings_are_the_judged_steering_evaluations_and_a_loop_gets_fluency_zero():
    """The judge sees each reply with the steering evaluation's three rubrics (concept = the role) in one call;
    a degenerate reply's fluency is 0 whatever the judge says; the assistant score turns the concept round."""
    from steering_assets.judge.judgments import Judgment
    from steering_assets.persona_space.capping_eval import CappingEvaluation, Prompt, assistant_score, rate_replies
    from steering_assets.steering.ratings import (
        CONCEPT_INSTRUCTION,
        FLUENCY_INSTRUCTION,
        INSTRUCTION_INSTRUCTION,
        Ratings,
    )

    class Recording:
        def __init__(self):
            self.calls = []

        def score(self, items, scale_top=None):
            self.calls.append((list(items), scale_top))
            # concept 2 (in role) for a reply that says "Arr", else 0; instruction and fluency 2
            return [Judgment(score=100.0 if (item.criterion != "concept" or "Arr" in item.answer) else 0.0, weight=1.0)
                    for item in items]

    prompts = [Prompt("pirate", "role-play", "You are a pirate.", "What is rain?", [])]
    judge = Recording()
    ratings = rate_replies(judge, prompts, {"unsteered": ["Arr, rain be the sky's grog."], "capped": ["Rain is water falling."]})
    [(items, top)] = judge.calls
    assert top == 2 and len(items) == 6
    assert [i.prompt.split("\n")[0] for i in items[:3]] == [CONCEPT_INSTRUCTION, INSTRUCTION_INSTRUCTION, FLUENCY_INSTRUCTION]
    assert items[0].concept == "pirate: You are a pirate." and items[0].contrast == "" and items[1].question == "What is rain?"
    assert ratings["unsteered"][0] == Ratings(2.0, 2.0, 2.0) and ratings["capped"][0] == Ratings(0.0, 2.0, 2.0)
    assert assistant_score(ratings["capped"][0]) == 2.0 and assistant_score(ratings["unsteered"][0]) == 0.0
    evaluation = CappingEvaluation({"capped": ["x"]}, {"capped": [Ratings(0.0, 2.0, 0.0)]}, {"capped": ["repetition"]}, [0])
    [row] = evaluation.table(prompts)
    assert row["degenerate"] == 1 and row["assistant_score"] == 0.0 and row["fluency"] == 0.0
