"""Tokenizers without a pad token (Llama and Mistral base models): every batched path pads with EOS on the
right side, or fails before any work naming the model setting."""

import copy

import numpy as np
import pytest
import torch

from steering_assets.judge.local import LocalJudge, complete_scenarios, scenario_prompt
from steering_assets.models.loading import MissingPadTokenError, padded_batches
from steering_assets.steering.config import SteeringTrainingConfig
from steering_assets.steering.evaluation import (
    EvaluationConfig,
    assistant_mean_hidden,
    assistant_perplexity,
    steered_generations,
)
from steering_assets.steering.training import PersonaData, train_steering_vectors

SCENARIOS = ["Arr, matey! The sea", "Whisk the eggs and", "Case closed, the culprit was the butler who"]


@pytest.fixture(scope="module")
def model(demo_workspace):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(demo_workspace.model_path, local_files_only=True).eval()


@pytest.fixture
def no_pad(tokenizer):
    bare = copy.deepcopy(tokenizer)
    bare.pad_token = None
    assert bare.pad_token_id is None and bare.eos_token_id is not None
    return bare


@pytest.fixture
def no_pad_no_eos(no_pad):
    bare = copy.deepcopy(no_pad)
    bare.eos_token = None
    assert bare.eos_token_id is None
    return bare


class Calls:
    """Counts forward passes of a model (to prove a failure came before any work)."""

    def __init__(self, model):
        self.count = 0
        self.handle = model.register_forward_pre_hook(lambda *args: setattr(self, "count", self.count + 1))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_padding_restores_the_shared_tokenizer(no_pad):
    side = no_pad.padding_side
    with padded_batches(no_pad, "left", "m") as pad_id:
        assert pad_id == no_pad.eos_token_id and no_pad.padding_side == "left"
        batch = no_pad(["a", "a longer text"], padding=True)
        assert batch["input_ids"][0][0] == no_pad.eos_token_id  # left side
    assert no_pad.pad_token is None and no_pad.padding_side == side


def test_vetting_generation_pads_with_eos_on_the_left(model, tokenizer, no_pad, no_pad_no_eos):
    with_pad = complete_scenarios(model, tokenizer, SCENARIOS, max_new_tokens=5, batch_size=3)
    assert complete_scenarios(model, no_pad, SCENARIOS, max_new_tokens=5, batch_size=3) == with_pad
    assert complete_scenarios(model, no_pad, SCENARIOS, max_new_tokens=5, batch_size=1) == with_pad
    with Calls(model) as calls, pytest.raises(MissingPadTokenError, match=r"the tokenizer of 'base-model' \(PERSONA_MODEL\) has no pad token and no EOS"):
        complete_scenarios(model, no_pad_no_eos, SCENARIOS, max_new_tokens=5, model_name="base-model")
    assert calls.count == 0


def test_local_judge_pads_with_eos_on_the_left(model, tokenizer, no_pad, no_pad_no_eos):
    prompts = [scenario_prompt("Being humorous.", s) for s in SCENARIOS]
    expected = LocalJudge(model, tokenizer, "judge").score(prompts)
    batched = LocalJudge(model, no_pad, "judge", batch_size=3).score(prompts)
    one_by_one = LocalJudge(model, no_pad, "judge", batch_size=1).score(prompts)
    for a, b, c in zip(expected, batched, one_by_one):
        assert a.weight == pytest.approx(b.weight, abs=1e-5) and b.weight == pytest.approx(c.weight, abs=1e-5)
    with Calls(model) as calls, pytest.raises(MissingPadTokenError, match=r"'judge' \(PERSONA_JUDGE_LOCAL_MODEL\)"):
        LocalJudge(model, no_pad_no_eos, "judge").score(prompts)
    assert calls.count == 0


def test_evaluation_pads_with_eos(model, tokenizer, no_pad, no_pad_no_eos, demo_conversations):
    conversations = demo_conversations("chef", 5)
    assert np.allclose(assistant_mean_hidden(model, no_pad, conversations, 3, batch_size=5),
                       assistant_mean_hidden(model, tokenizer, conversations, 3, batch_size=1), atol=1e-5)
    assert assistant_perplexity(model, no_pad, conversations, batch_size=5) == pytest.approx(
        assistant_perplexity(model, tokenizer, conversations, batch_size=1), rel=1e-5)
    config = EvaluationConfig(coefficients=(0.0, 2.0), max_new_tokens=6)
    vector = torch.randn(model.config.hidden_size)
    prompts = ["How are you?", "What do you think about a lost key, and why?"]
    assert steered_generations(model, no_pad, prompts, 2, vector, config) == steered_generations(model, tokenizer, prompts, 2, vector, config)
    for call in (lambda: assistant_mean_hidden(model, no_pad_no_eos, conversations, 3),
                 lambda: assistant_perplexity(model, no_pad_no_eos, conversations),
                 lambda: steered_generations(model, no_pad_no_eos, prompts, 2, vector, config)):
        with Calls(model) as calls, pytest.raises(MissingPadTokenError, match=r"\(PERSONA_MODEL\) has no pad token and no EOS"):
            call()
        assert calls.count == 0


def test_training_pads_with_eos_on_the_right(tiny_model_factory, tokenizer, no_pad, no_pad_no_eos, demo_conversations, tmp_path):
    persona = PersonaData("demo/chef", demo_conversations("chef", 8), [])
    config = SteeringTrainingConfig(layer=2, max_steps=3, eval_steps=3, save_steps=3, per_device_batch_size=4, max_length=64,
                                    warmup_steps=0, early_stopping_patience=0)
    padded = train_steering_vectors(tiny_model_factory(), tokenizer, [persona], config, tmp_path / "pad", model_name="m")
    eos = train_steering_vectors(tiny_model_factory(), no_pad, [persona], config, tmp_path / "eos", model_name="m")
    assert torch.allclose(padded.vectors[0].vector, eos.vectors[0].vector, atol=1e-6)
    assert no_pad.pad_token is None  # the shared tokenizer is left as it was
    model = tiny_model_factory()
    with Calls(model) as calls, pytest.raises(MissingPadTokenError, match=r"the tokenizer of 'm' \(PERSONA_MODEL\)"):
        train_steering_vectors(model, no_pad_no_eos, [persona], config, tmp_path / "none", model_name="m")
    assert calls.count == 0 and not (tmp_path / "none").exists()
