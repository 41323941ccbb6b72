"""Evaluating steering vectors: as linear probes, by perplexity, and by what steered generations say.

Plain functions over a model, a tokenizer and conversations; the Dagster asset wires
them to artifacts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from steering_assets.models.assistant_mask import reply_batches, reply_token_masks
from steering_assets.models.hooks import attach_steering, check_layer, hidden_size, input_device
from steering_assets.models.loading import padded_batches, padding_token_id
from steering_assets.models.residual import reply_block_outputs


@dataclass(frozen=True)
class EvaluationConfig:
    """``coefficients``: steering strengths in units of the layer's typical residual-stream norm (0 = unsteered):
    the vector is applied as ``c x r x v / |v|`` with ``r`` the median norm of reply tokens at its layer, as in
    the judged evaluation, so the numbers mean the same for every model, layer and vector."""

    coefficients: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5, 1.0)
    n_prompts: int = 16
    max_new_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 0.9
    held_out_rows: int = 120
    batch_size: int = 16
    seed: int = 0
    # What counts as a steering effect (SteeringEffect.shows_effect): the classifier's probability of the
    # target persona at the best strength is at least effect_min_probability and at least effect_min_ratio
    # times both the unsteered probability and a random direction's at that strength.
    effect_min_probability: float = 0.5
    effect_min_ratio: float = 2.0


@torch.no_grad()
def assistant_mean_hidden(model, tokenizer, conversations, layer: int, batch_size: int = 16, max_length: int = 1024,
                          model_name: str = "the target model") -> np.ndarray:
    """``[n_conversations, d]``: mean residual stream at the output of decoder block ``layer`` over each reply's tokens.

    Layer L is block L's output (docs/steering.md#layers), read with a hook (the last block included), so
    the activation vector lives where steering adds. Raises ``FloatingPointError`` on NaN/inf.
    """
    check_layer(model, layer)
    rows = []
    for captured, assistant in reply_block_outputs(model, tokenizer, conversations, [layer], batch_size=batch_size,
                                                   max_length=max_length, model_name=model_name):
        hidden = captured[layer]
        mask = assistant.unsqueeze(-1).to(hidden.dtype)
        means = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        rows.append(means.float().cpu().numpy())
    result = np.concatenate(rows) if rows else np.zeros((0, hidden_size(model)), dtype=np.float32)
    if not np.isfinite(result).all():
        raise FloatingPointError(f"non-finite hidden states at layer {layer}; the model or the inputs are broken")
    return result


@torch.no_grad()
def assistant_perplexity(model, tokenizer, conversations, batch_size: int = 16, max_length: int = 1024,
                         model_name: str = "the target model") -> float:
    """exp(mean next-token loss over the assistant replies' tokens), the same tokens training computes its loss on."""
    pad_id = padding_token_id(tokenizer, model_name)
    ids, masks = reply_token_masks(tokenizer, conversations, max_length)
    device = input_device(model)
    total, count = 0.0, 0
    for input_ids, attention, assistant in reply_batches(ids, masks, batch_size, pad_id, device):
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
        targets = input_ids[:, 1:].to(logits.device)
        mask = assistant[:, 1:].to(logits.device)
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        total += float((losses * mask).sum())
        count += int(mask.sum())
    return math.exp(total / max(count, 1))


def projection_classifier(positive: np.ndarray, negative: np.ndarray, vector: np.ndarray, seed: int) -> dict[str, float]:
    """The vector as a linear probe: how well the projection onto ``vector`` tells ``positive`` from ``negative`` rows.

    ``positive``, ``negative``: ``[n, hidden]`` replies' mean residual-stream activations. ``roc_auc`` ranks
    every row by its projection (nothing is fitted: the direction came from other rows, the training split),
    so it holds on the few held-out replies a small persona set has; ``accuracy`` and ``f1`` are of a
    threshold (logistic regression on the 1-D projection) under stratified k-fold cross-validation
    (k = 5, or the smaller class's size). Raises ValueError below 5 rows a class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if len(positive) < 5 or len(negative) < 5:
        raise ValueError(f"projection classifier needs at least 5 examples per class, got {len(positive)} and {len(negative)}")
    direction = vector / (np.linalg.norm(vector) or 1.0)
    x = np.concatenate([positive, negative]) @ direction
    y = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    folds = StratifiedKFold(n_splits=min(5, len(positive), len(negative)), shuffle=True, random_state=seed)
    predicted = cross_val_predict(LogisticRegression(), x[:, None], y, cv=folds)
    return {
        "roc_auc": float(roc_auc_score(y, x)),
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted)),
        "n_rows": int(len(y)),
    }


def projection_regression(hidden: np.ndarray, scores: np.ndarray, vector: np.ndarray, seed: int) -> dict[str, float]:
    """The vector as a probe of a trait score: the projection onto ``vector`` against each reply's judge score.

    ``hidden``: ``[n, hidden]`` replies' mean activations; ``scores``: ``[n]`` 0-100 trait scores.
    ``spearman``: rank correlation of projection and score (nothing fitted); ``r2`` and ``mse``: ridge
    regression of the score on the projection, k-fold cross-validated (k = 5, or n // 2). When the
    projection or the scores are constant, rank correlation is undefined: ``spearman`` is None and
    ``spearman_undefined`` says which side was constant. Raises ValueError below 10 rows.
    """
    from scipy.stats import spearmanr
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error, r2_score
    from sklearn.model_selection import KFold, cross_val_predict

    if len(hidden) < 10:
        raise ValueError(f"projection regression needs at least 10 scored examples, got {len(hidden)}")
    direction = vector / (np.linalg.norm(vector) or 1.0)
    x = (hidden @ direction)[:, None]
    folds = KFold(n_splits=min(5, len(hidden) // 2), shuffle=True, random_state=seed)
    predicted = cross_val_predict(Ridge(alpha=1.0), x, scores, cv=folds)
    metrics = {"r2": float(r2_score(scores, predicted)), "mse": float(mean_squared_error(scores, predicted)),
               "n_rows": int(len(hidden))}
    constant = [name for name, values in (("projection", x[:, 0]), ("scores", scores)) if np.ptp(values) == 0]
    if constant:
        return {"spearman": None, "spearman_undefined": f"constant {' and '.join(constant)}", **metrics}
    return {"spearman": float(spearmanr(x[:, 0], scores).statistic), **metrics}


@torch.no_grad()
def steered_generations(model, tokenizer, prompts: Sequence[str], layer: int, vector: torch.Tensor, config: EvaluationConfig,
                        model_name: str = "the target model") -> dict[float, list[str]]:
    """Replies to each neutral prompt at every steering coefficient, with the same sampling seed.

    Prompts are left-padded (with EOS when the tokenizer has no pad token) so every row's
    next token follows its own last prompt token.
    """
    device = input_device(model)
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False) for p in prompts]
    with padded_batches(tokenizer, "left", model_name) as pad_id:
        batch = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    outputs: dict[float, list[str]] = {}
    with attach_steering(model, layer, 1, vector[None].float()) as handle:
        for coefficient in config.coefficients:
            handle.steering.coefficient = float(coefficient)
            torch.manual_seed(config.seed)
            generated = model.generate(
                **batch,
                max_new_tokens=config.max_new_tokens,
                do_sample=True,
                temperature=config.temperature,
                top_p=config.top_p,
                pad_token_id=pad_id,
            )
            replies = tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            outputs[float(coefficient)] = [r.strip() for r in replies]
    return outputs


@dataclass
class SteeringEffect:
    coefficients: list[float]
    target_probability: list[float]  # mean classifier probability of the target persona, per coefficient
    best_coefficient: float
    examples: dict[float, list[str]] = field(default_factory=dict)
    # The same for a random direction of the same norm at the same layer, per coefficient (None: not measured).
    random_probability: list[float] | None = None
    min_probability: float = 0.5
    min_ratio: float = 2.0

    @property
    def random_at_best(self) -> float:
        if self.random_probability is None:
            return float("nan")
        return self.random_probability[self.coefficients.index(self.best_coefficient)]

    @property
    def unsteered(self) -> float:
        return self.target_probability[self.coefficients.index(0.0)] if 0.0 in self.coefficients else float("nan")

    @property
    def best(self) -> float:
        return self.target_probability[self.coefficients.index(self.best_coefficient)]

    @property
    def shows_effect(self) -> bool:
        """At least ``min_probability``, at least ``min_ratio`` times the unsteered probability, and (when measured)
        ``min_ratio`` times what a random direction of the same strength reaches: an effect counts only above the
        random baseline. The bar is ``EvaluationConfig.effect_min_probability`` and ``effect_min_ratio``."""
        above_random = self.random_probability is None or self.best >= self.min_ratio * self.random_at_best
        return self.best >= self.min_probability and self.best >= self.min_ratio * self.unsteered and above_random


def steering_effect(generations: dict[float, list[str]], target_class: str, classifier, encoder,
                    random_generations: dict[float, list[str]] | None = None, min_probability: float = 0.5,
                    min_ratio: float = 2.0) -> SteeringEffect:
    coefficients = sorted(generations)
    column = classifier.classes.index(target_class)

    def mean_probability(texts: list[str]) -> float:
        return float(classifier.probabilities(texts, encoder)[:, column].mean())

    probabilities = [mean_probability(generations[c]) for c in coefficients]
    steered = [(p, c) for p, c in zip(probabilities, coefficients) if c != 0.0]
    best = max(steered)[1] if steered else coefficients[0]
    random = None
    if random_generations is not None:
        # Coefficient 0 is the same unsteered text for both directions.
        random = [probabilities[i] if c == 0.0 else mean_probability(random_generations[c]) for i, c in enumerate(coefficients)]
    return SteeringEffect(coefficients, probabilities, best, {c: generations[c][:3] for c in coefficients}, random,
                          min_probability, min_ratio)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denominator) if denominator else float("nan")
