"""The offline demo workspace: exact raw layout, realistic variety, a loadable tiny Qwen3 model."""

import json
from collections import Counter

from steering_assets.demo.build import build_demo_workspace
from steering_assets.demo.corpus import ROLE_VOICES, TRAIT_VOICES, write_demo_rollouts
from steering_assets.demo.model import build_tiny_model, train_tokenizer
from steering_assets.personas.layout import ROLES, TRAITS, discover_personas
from steering_assets.personas.loading import read_responses, read_scores


def test_layout_has_roles_traits_and_unscored_baselines(demo_workspace):
    roles = discover_personas(demo_workspace.data_root, ROLES)
    traits = discover_personas(demo_workspace.data_root, TRAITS)
    assert len(roles.personas) >= 8 and len(traits.personas) >= 4
    assert {r.name for r in roles.baselines} == {"0_default", "1_default"}
    for ref in roles.baselines:
        assert not ref.scores_path(demo_workspace.data_root).exists()
        first = json.loads(ref.responses_path(demo_workspace.data_root).read_text().splitlines()[0])
        assert set(first) == {"system_prompt", "label", "prompt_index", "question_index", "question", "conversation"}
    no_system = read_responses(roles.baselines[0].responses_path(demo_workspace.data_root), ROLES)[0]
    assert [t["role"] for t in no_system.conversation] == ["user", "assistant"]


def test_scores_have_realistic_variety(demo_workspace):
    root = demo_workspace.data_root
    role = next(r for r in discover_personas(root, ROLES).personas if r.name == "pirate")
    role_scores = Counter(read_scores(role.scores_path(root), ROLES).values())
    assert set(role_scores) == {0, 1, 2, 3}
    trait = discover_personas(root, TRAITS).personas[0]
    trait_scores = read_scores(trait.scores_path(root), TRAITS)
    assert "REFUSAL" in trait_scores.values()
    numeric = [v for v in trait_scores.values() if v != "REFUSAL"]
    assert min(numeric) <= 10 and max(numeric) >= 95
    labels = Counter(r.label for r in read_responses(trait.responses_path(root), TRAITS))
    assert labels["pos"] == labels["neg"] > 0
    responses = {r.score_key for r in read_responses(role.responses_path(root), ROLES)}
    scored = set(read_scores(role.scores_path(root), ROLES))
    assert responses - scored, "some responses must lack a score"
    assert scored - responses, "some scores must lack a response"


def test_rollouts_are_deterministic_from_the_seed(tmp_path):
    write_demo_rollouts(tmp_path / "a", seed=3)
    write_demo_rollouts(tmp_path / "b", seed=3)
    write_demo_rollouts(tmp_path / "c", seed=4)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.json*"))
    assert len(files) == 2 * len(ROLE_VOICES) + 2 * len(TRAIT_VOICES) + 2
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files)


def test_tiny_model_loads_by_path_like_a_hub_model(demo_workspace, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(demo_workspace.model_path, local_files_only=True)
    assert model.config.model_type == "qwen3"
    conversation = [{"role": "user", "content": "What do you think about a lost key?"},
                    {"role": "assistant", "content": "Arr, matey! Shiver me timbers!"}]
    encoded = tokenizer.apply_chat_template(conversation, return_dict=True, return_assistant_tokens_mask=True)
    decoded_assistant = tokenizer.decode([t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m])
    assert decoded_assistant == "Arr, matey! Shiver me timbers!<|im_end|>"
    with torch.no_grad():
        logits = model(torch.tensor([encoded["input_ids"]])).logits
    assert logits.shape == (1, len(encoded["input_ids"]), len(tokenizer))


def test_model_weights_are_deterministic_from_the_seed():
    tokenizer = train_tokenizer(["a small corpus for a small tokenizer"] * 20, vocab_size=300)
    first, second = build_tiny_model(tokenizer, seed=1), build_tiny_model(tokenizer, seed=1)
    assert all((a == b).all() for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_workspace_build_is_cached(demo_workspace):
    workspace, built = build_demo_workspace(demo_workspace.root, pretrain_steps=0, steering_judge_steps=0)
    assert not built and workspace == demo_workspace
