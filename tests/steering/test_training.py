import copy

import pytest
import torch

from steering_assets.models.errors import CheckpointMismatchError, EmptyTrainingSplitError, NonFiniteLossError
from steering_assets.personas.budget import ChatTemplateMissingError
from steering_assets.steering import training
from steering_assets.steering.config import SteeringTrainingConfig
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


# ---- the loss mask with any chat template -------------------------------------------------

def _without_generation_tags(tokenizer):
    import re

    bare = copy.deepcopy(tokenizer)
    bare.chat_template = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", tokenizer.chat_template)
    return bare


def test_a_vector_trained_through_the_fallback_mask_equals_one_trained_with_tags(tiny_model_factory, tokenizer, personas, tmp_path):
    tagged = train(tiny_model_factory(), personas[:2], tmp_path / "tags", tokenizer=tokenizer)
    bare = _without_generation_tags(tokenizer)
    fallback = train(tiny_model_factory(), personas[:2], tmp_path / "fallback", tokenizer=bare)
    assert (tagged.assistant_mask, fallback.assistant_mask) == ("generation_tags", "rendered_reply")
    assert fallback.loss_token_share == pytest.approx(tagged.loss_token_share) and tagged.loss_token_share < 1.0
    for a, b in zip(tagged.vectors, fallback.vectors):
        assert a.vector.norm() > 0.01
        assert torch.allclose(a.vector, b.vector, atol=1e-6)
        assert a.best_validation_loss == pytest.approx(b.best_validation_loss, rel=1e-6)


@pytest.mark.parametrize("family", ["qwen3", "gemma2", "llama3", "llama3.3"])
def test_real_templates_train_on_the_reply_tokens_only(family, demo_conversations, tmp_path):
    from steering_assets.models.assistant_mask import rendered_reply_mask
    from steering_assets.steering.training import persona_seed, rows_needed
    from tests.chat_tokenizers import build_tokenizer, templates_present, tiny_qwen3

    if not templates_present():
        pytest.skip("../shared/fixtures/real_world/chat_templates is not present")
    tokenizer = build_tokenizer(family)
    persona = PersonaData("demo/pirate", demo_conversations("pirate", 6), demo_conversations("pirate", 8)[-2:])
    config = SteeringTrainingConfig(**{**FAST.__dict__, "max_steps": 2, "max_length": 1024, "layer": 1})
    outcome = train_steering_vectors(tiny_qwen3(tokenizer), tokenizer, [persona], config, tmp_path, model_name=family)
    assert outcome.assistant_mask == "rendered_reply"
    drawn = rows_needed(len(persona.train), 2, config.per_device_batch_size, persona_seed(config.seed, persona.name))
    masks = [rendered_reply_mask(tokenizer, persona.train[i]) for i in drawn]
    cut = config.max_length  # TRL truncates the rows to max_length before training
    expected = sum(sum(m.assistant_mask[:cut]) for m in masks) / sum(len(m.input_ids[:cut]) for m in masks)
    assert outcome.loss_token_share == pytest.approx(expected) and outcome.loss_token_share < 1.0
    assert outcome.vectors[0].vector.norm() > 0


# ---- loss normalisation across gradient accumulation --------------------------------------

def test_gradient_accumulation_normalises_each_persona_over_the_whole_step(tiny_model_factory, tokenizer, personas, tmp_path):
    """Batch 8 x accumulation 1 and batch 4 x accumulation 2 over the same 8 rows give the same gradient."""
    from transformers import TrainerCallback

    class Grab(TrainerCallback):
        def __init__(self):
            self.grads = []

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            self.grads.append(model.persona_steering.vectors.grad.detach().clone())

    two = [PersonaData(p.name, p.train[:8], []) for p in personas[:2]]
    lengths = [len(tokenizer.apply_chat_template(m)["input_ids"]) for m in two[0].train]
    assert len(set(lengths)) > 2  # replies of unequal length, or the test could not tell the two ways apart
    base = {**FAST.__dict__, "max_steps": 1, "max_grad_norm": 0.0, "max_length": 1024, "warmup_steps": 0}
    grads = []
    for batch, accumulation in ((8, 1), (4, 2)):
        grab = Grab()
        config = SteeringTrainingConfig(**{**base, "per_device_batch_size": batch, "gradient_accumulation_steps": accumulation})
        train(tiny_model_factory(), two, tmp_path / f"b{batch}", config, tokenizer=tokenizer, callbacks=[grab])
        assert len(grab.grads) == 1
        grads.append(grab.grads[0])
    one, accumulated = grads
    assert one.norm() > 0
    assert ((one - accumulated).norm() / one.norm()).item() < 1e-5


@pytest.mark.parametrize("family", ["qwen3", "gemma2", "llama3", "llama3.3"])
def test_vector_artifact_records_the_fallback_mask_with_each_real_template(family, demo_workspace, tmp_path):
    """The steering_vector artifact of a real template says assistant-only loss, built by the rendered-reply method."""
    import json

    from steering_assets.core.artifacts import ArtifactStore
    from steering_assets.formats.rollouts import ROLES, PersonaRef
    from steering_assets.personas.budget import BudgetConfig
    from steering_assets.personas.materialize import materialize_persona_dataset, materialize_training_split
    from steering_assets.steering.export import GGUF_FILE, LAYER_STACK_FILE, LM_EVAL_FILE
    from steering_assets.steering.trained_vectors import materialize_steering_vectors
    from tests.chat_tokenizers import build_tokenizer, templates_present, tiny_qwen3

    if not templates_present():
        pytest.skip("../shared/fixtures/real_world/chat_templates is not present")
    tokenizer = build_tokenizer(family)
    store = ArtifactStore(tmp_path / "artifacts")
    ref = PersonaRef(ROLES, "SmolLM2-135M-Instruct.Q4_1", "pirate")
    materialize_persona_dataset(ref, demo_workspace.data_root, store)
    materialize_training_split(ref, store, tokenizer, BudgetConfig(train_tokens=4000, validation_tokens=800))
    config = SteeringTrainingConfig(**{**FAST.__dict__, "max_steps": 2, "eval_steps": 2, "save_steps": 2, "layer": 1, "max_length": 256})
    result = materialize_steering_vectors([ref], store, tiny_qwen3(tokenizer), tokenizer, family, config, log=lambda _: None)
    artifact = result[ref.partition_key]
    saved = json.loads((artifact.folder / "steering_config.json").read_text())
    assert saved["assistant_mask"] == "rendered_reply" and saved["metrics"]["assistant_only_loss"] is True
    assert 0 < saved["metrics"]["loss_token_share"] < 1
    assert artifact.details["assistant_mask"] == "rendered_reply"
    assert {GGUF_FILE, LM_EVAL_FILE, LAYER_STACK_FILE} <= {p.name for p in artifact.folder.iterdir()}
    assert saved["exports"] == {"files": sorted([GGUF_FILE, LM_EVAL_FILE, LAYER_STACK_FILE]), "not_exported": {}}


def test_rows_whose_reply_starts_beyond_max_length_are_skipped_and_counted(tmp_path):
    from tests.chat_tokenizers import build_tokenizer, tiny_qwen3
    from tests.tiny_models import CHAT_TEMPLATE

    tokenizer = build_tokenizer("qwen3", chat_template=CHAT_TEMPLATE)
    short = [[{"role": "user", "content": "How are you?"}, {"role": "assistant", "content": f"Arr, matey number {i}!"}] for i in range(3)]
    long_prompt = [{"role": "user", "content": "Tell me about the sea. " * 30}, {"role": "assistant", "content": "Hoist the sails."}]
    config = SteeringTrainingConfig(**{**FAST.__dict__, "max_steps": 2, "per_device_batch_size": 4, "max_length": 40, "layer": 1})
    outcome = train_steering_vectors(tiny_qwen3(tokenizer), tokenizer, [PersonaData("demo/p", short + [long_prompt], [])], config,
                                     tmp_path / "some", model_name="tiny")
    assert outcome.rows_without_loss_tokens == {"demo/p": 1} and outcome.vectors[0].vector.norm() > 0
    with pytest.raises(EmptyTrainingSplitError, match=r"no training row of demo/q has reply tokens within max_length=40"):
        train_steering_vectors(tiny_qwen3(tokenizer), tokenizer, [PersonaData("demo/q", [long_prompt], [])], config,
                               tmp_path / "none", model_name="tiny")
