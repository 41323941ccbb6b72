import numpy as np
import pytest
import torch

from steering_assets.models.hooks import attach_steering
from steering_assets.steering.evaluation import (
    SteeringEffect,
    assistant_mean_hidden,
    assistant_perplexity,
    cosine,
    projection_classifier,
    projection_regression,
)
from steering_assets.steering.persona_classifier import PersonaClassifier


def test_projection_probe_separates_along_the_vector_only():
    rng = np.random.default_rng(0)
    direction = np.zeros(16)
    direction[0] = 1.0
    negatives = rng.normal(size=(60, 16))
    positives = rng.normal(size=(60, 16)) + 4 * direction
    assert projection_classifier(positives, negatives, direction, seed=0)["roc_auc"] > 0.95
    orthogonal = np.zeros(16)
    orthogonal[1] = 1.0
    assert projection_classifier(positives, negatives, orthogonal, seed=0)["roc_auc"] < 0.8
    with pytest.raises(ValueError, match="at least 5 examples per class"):
        projection_classifier(positives[:3], negatives, direction, seed=0)


def test_projection_probe_on_a_small_persona_set_ranks_every_row_without_a_split():
    # Five held-out replies a side (a small demo persona): the AUC is the ranking of all ten projections.
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    direction = rng.normal(size=12)
    positives, negatives = rng.normal(size=(5, 12)) + 0.8 * direction, rng.normal(size=(5, 12))
    metrics = projection_classifier(positives, negatives, direction, seed=0)
    unit = direction / np.linalg.norm(direction)
    expected = roc_auc_score([1] * 5 + [0] * 5, np.concatenate([positives, negatives]) @ unit)
    assert metrics["roc_auc"] == pytest.approx(expected) and metrics["n_rows"] == 10
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_projection_regression_recovers_a_linear_trait_score():
    rng = np.random.default_rng(1)
    direction = rng.normal(size=8)
    hidden = rng.normal(size=(100, 8))
    scores = 50 + 10 * hidden @ (direction / np.linalg.norm(direction)) + rng.normal(scale=0.5, size=100)
    metrics = projection_regression(hidden, scores, direction, seed=0)
    assert metrics["r2"] > 0.95 and metrics["mse"] < 2 and metrics["spearman"] > 0.95


def test_projection_regression_says_when_rank_correlation_is_undefined():
    hidden = np.ones((12, 4))  # every reply projects to the same value
    metrics = projection_regression(hidden, np.arange(12, dtype=float), np.ones(4), seed=0)
    assert metrics["spearman"] is None and metrics["spearman_undefined"] == "constant projection"
    metrics = projection_regression(np.random.default_rng(0).normal(size=(12, 4)), np.full(12, 50.0), np.ones(4), seed=0)
    assert metrics["spearman"] is None and metrics["spearman_undefined"] == "constant scores"


def test_steering_effect_bar():
    assert SteeringEffect([0.0, 2.0], [0.1, 0.6], 2.0).shows_effect
    assert not SteeringEffect([0.0, 2.0], [0.3, 0.55], 2.0).shows_effect  # not twice the unsteered value
    assert not SteeringEffect([0.0, 2.0], [0.05, 0.4], 2.0).shows_effect  # below 0.5
    # The bar is configurable (SteeringEvalConfig.effect_min_probability / effect_min_ratio).
    assert SteeringEffect([0.0, 2.0], [0.05, 0.4], 2.0, min_probability=0.3).shows_effect
    assert not SteeringEffect([0.0, 2.0], [0.1, 0.6], 2.0, min_ratio=10.0).shows_effect
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)


def test_classifier_round_trips_without_pickle(tmp_path):
    class FakeEncoder:
        def encode(self, texts):
            return np.array([[len(t), t.count("arr")] for t in texts], dtype=float)

    texts = {"pirate": [f"arr arr {i}" for i in range(20)], "<baseline>": [f"hello there friend {i}" for i in range(20)]}
    classifier, info = PersonaClassifier.fit(texts, FakeEncoder())
    path = tmp_path / "classifier.npz"
    classifier.save(path)
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"classes", "coef", "intercept"}
    loaded = PersonaClassifier.load(path)
    probe = ["arr arr arr", "hello there"]
    assert np.allclose(loaded.probabilities(probe, FakeEncoder()), classifier.probabilities(probe, FakeEncoder()))
    assert loaded.classes == ["<baseline>", "pirate"] and info["held_out_accuracy"] == 1.0


def test_classifier_trains_on_a_persona_with_a_single_kept_reply():
    # A trait with one judged-good reply cannot be stratified; the split falls back and says so.
    class FakeEncoder:
        def encode(self, texts):
            return np.array([[t.count("arr"), t.count("ha"), t.count("hello")] for t in texts], dtype=float)

    texts = {"pirate": [f"arr arr {i}" for i in range(6)], "humorous": ["ha ha ha"], "<baseline>": [f"hello {i}" for i in range(6)]}
    classifier, info = PersonaClassifier.fit(texts, FakeEncoder())
    assert info["split"].startswith("unstratified") and info["examples_per_class"]["humorous"] == 1
    assert info["held_out_examples"] == 3 and 0.0 <= info["held_out_accuracy"] <= 1.0
    # The final model is fitted on every example, so the one-reply class is still predicted.
    assert classifier.classes[int(classifier.probabilities(["ha ha ha ha"], FakeEncoder()).argmax())] == "humorous"
    balanced = {"pirate": texts["pirate"], "<baseline>": texts["<baseline>"]}
    assert PersonaClassifier.fit(balanced, FakeEncoder())[1]["split"] == "stratified"


def test_reply_activations_and_perplexity_see_the_steering(tiny_model_factory, tokenizer, demo_conversations):
    model = tiny_model_factory()
    conversations = demo_conversations("pirate", 6)
    base = assistant_mean_hidden(model, tokenizer, conversations, layer=1, batch_size=4)
    assert base.shape == (6, model.config.hidden_size)
    vector = torch.randn(model.config.hidden_size)
    with attach_steering(model, 1, 1, vector[None]):
        steered = assistant_mean_hidden(model, tokenizer, conversations, layer=1, batch_size=4)
        steered_ppl = assistant_perplexity(model, tokenizer, conversations)
    assert np.allclose(steered - base, vector.numpy(), atol=1e-4)
    assert steered_ppl != pytest.approx(assistant_perplexity(model, tokenizer, conversations))
    # Batching and padding do not change a row's mean activation.
    single = assistant_mean_hidden(model, tokenizer, conversations[:1], layer=1)
    assert np.allclose(single[0], base[0], atol=1e-4)
