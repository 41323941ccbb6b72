import copy

import pytest
import torch

from steering_assets.personas.budget import ChatTemplateMissingError
from steering_assets.steering import training
from steering_assets.steering.config import SteeringTrainingConfig
from steering_assets.steering.errors import CheckpointMismatchError, EmptyTrainingSplitError, NonFiniteLossError
from steering_assets.steering.training import PersonaData, train_steering_vectors

FAST = SteeringTrainingConfig(layer=2, max_steps=8, eval_steps=4, save_steps=4, per_device_batch_size=2,
                              max_length=48, warmup_steps=1, learning_rate=0.05, early_stopping_patience=0)


@pytest.fixture
def personas(demo_conversations):
    return [
        PersonaData(f"demo/{name}", demo_conversations(name, 10 + i), demo_conversations(name, 14)[-3:])
        for i, name in enumerate(("pirate", "chef", "gardener"))
    ]


def train(model, personas, out, config=FAST, **kwargs):
    return train_steering_vectors(model, kwargs.pop("tokenizer"), personas, config, out, model_name="tiny", **kwargs)


def test_k_personas_together_equal_each_trained_alone(tiny_model_factory, tokenizer, personas, tmp_path):
    together = train(tiny_model_factory(), personas, tmp_path / "together", tokenizer=tokenizer)
    for k, persona in enumerate(personas):
        alone = train(tiny_model_factory(), [persona], tmp_path / f"alone{k}", tokenizer=tokenizer)
        assert torch.allclose(together.vectors[k].vector, alone.vectors[0].vector, atol=1e-5, rtol=1e-4)
        assert together.vectors[k].best_validation_loss == pytest.approx(alone.vectors[0].best_validation_loss, rel=1e-5)
        assert together.vectors[k].vector.norm() > 0.01  # it really trained
    # Personas differ, so their vectors do too.
    assert not torch.allclose(together.vectors[0].vector, together.vectors[1].vector)


def test_resume_after_a_crash_continues_exactly(tiny_model_factory, tokenizer, personas, tmp_path, monkeypatch):
    reference = train(tiny_model_factory(), personas[:2], tmp_path / "reference", tokenizer=tokenizer)

    original = training.StepBatches.__getitem__

    def crash_at_step_6(self, step):
        if step == 6:
            raise KeyboardInterrupt("simulated crash")
        return original(self, step)

    monkeypatch.setattr(training.StepBatches, "__getitem__", crash_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model_factory(), personas[:2], tmp_path / "crashing", tokenizer=tokenizer)
    assert (tmp_path / "crashing" / "checkpoint-4" / training.STATE_FILE).is_file()
    assert not (tmp_path / "crashing" / "checkpoint-4" / "model.safetensors").exists()  # never the base model
    monkeypatch.setattr(training.StepBatches, "__getitem__", original)

    resumed = train(tiny_model_factory(), personas[:2], tmp_path / "crashing", tokenizer=tokenizer)
    assert resumed.resumed_from.endswith("checkpoint-4")
    for a, b in zip(resumed.vectors, reference.vectors):
        assert torch.allclose(a.vector, b.vector, atol=1e-6)


def test_checkpoint_from_another_layer_or_model_is_refused(tiny_model_factory, tokenizer, personas, tmp_path):
    config = SteeringTrainingConfig(**{**FAST.__dict__, "max_steps": 4})
    train(tiny_model_factory(), personas[:1], tmp_path, config, tokenizer=tokenizer)
    other_layer = SteeringTrainingConfig(**{**FAST.__dict__, "layer": 1})
    with pytest.raises(CheckpointMismatchError, match=r"written for layer=2, but this run has layer=1"):
        train(tiny_model_factory(), personas[:1], tmp_path, other_layer, tokenizer=tokenizer)
    with pytest.raises(CheckpointMismatchError, match=r"model='tiny'"):
        train_steering_vectors(tiny_model_factory(), tokenizer, personas[:1], config, tmp_path, model_name="other")


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_vector(tiny_model_factory, tokenizer, personas, tmp_path, monkeypatch):
    original = training.per_persona_token_losses
    calls = {"n": 0}

    def poisoned(*args):
        sums, counts = original(*args)
        if not torch.is_grad_enabled():  # validation passes are left alone
            return sums, counts
        calls["n"] += 1
        return (sums * float("nan"), counts) if calls["n"] == 5 else (sums, counts)

    monkeypatch.setattr(training, "per_persona_token_losses", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"NaN/inf at step 4 for demo/pirate.*last good vectors are in"):
        train(tiny_model_factory(), personas[:1], tmp_path, tokenizer=tokenizer)
    from safetensors.torch import load_file

    kept = load_file(str(tmp_path / training.LAST_GOOD_FILE))["vectors"]
    assert torch.isfinite(kept).all() and kept.norm() > 0


def test_empty_training_split_is_refused(tiny_model_factory, tokenizer, personas, tmp_path):
    with pytest.raises(EmptyTrainingSplitError, match=r"no training examples for demo/empty"):
        train(tiny_model_factory(), [personas[0], PersonaData("demo/empty", [], [])], tmp_path, tokenizer=tokenizer)


def test_tokenizer_without_chat_template_is_refused(tiny_model_factory, tokenizer, personas, tmp_path):
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(ChatTemplateMissingError, match="has no chat template"):
        train(tiny_model_factory(), personas[:1], tmp_path, tokenizer=bare)


def test_persona_without_validation_rows_keeps_its_final_vector(tiny_model_factory, tokenizer, personas, tmp_path):
    outcome = train(tiny_model_factory(), [PersonaData("demo/short", personas[0].train, [])], tmp_path, tokenizer=tokenizer)
    trained = outcome.vectors[0]
    assert trained.best_step is None and trained.best_validation_loss is None
    assert trained.steps == FAST.max_steps and trained.vector.norm() > 0


def test_epochs_set_the_number_of_steps(tiny_model_factory, tokenizer, personas, tmp_path):
    config = SteeringTrainingConfig(**{**FAST.__dict__, "epochs": 1.0, "eval_steps": 2, "save_steps": 2})
    outcome = train(tiny_model_factory(), personas[:2], tmp_path, config, tokenizer=tokenizer)
    # The larger split has 11 rows and 2 rows per step: one epoch is 6 steps.
    assert outcome.vectors[0].steps == 6
    with pytest.raises(ValueError, match="epochs must be positive"):
        SteeringTrainingConfig(epochs=0)
