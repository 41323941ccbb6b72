"""Ranking SAE features against concept-strength labels (0-3).

For each feature, over the final-token activations of labelled sentences:

- ``pearson``: correlation of the activation with the label;
- ``gap``: (mean at label 3 - mean at label 0) / pooled standard deviation;
- ``tpr_minus_fpr``: with a threshold at the 95th percentile of label-0 activations,
  the share of label-3 sentences above it minus the share of label-0 sentences above it;
- ``monotonic``: the mean activation never decreases from label 0 to 1 to 2 to 3 by more
  than a tenth of its overall rise from label 0 to label 3 (sampling noise between
  flat labels), and it does rise.

Features are ranked by ``pearson`` among the monotonic ones (then the rest), so the top
of the table are features that rise steadily with the concept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureScore:
    layer: int
    feature: int
    pearson: float
    gap: float
    tpr_minus_fpr: float
    monotonic: bool
    means: tuple[float, ...]  # mean activation per label 0..3


def score_features(activations: np.ndarray, labels: np.ndarray, layer: int) -> list[FeatureScore]:
    """Scores of every feature; ``activations`` is ``[n_sentences, d_sae]`` and labels are 0-3."""
    activations = np.asarray(activations, dtype=np.float64)
    labels = np.asarray(labels)
    if activations.ndim != 2 or len(activations) != len(labels):
        raise ValueError(f"activations {activations.shape} and labels {labels.shape} do not line up")
    present = sorted(set(labels.tolist()))
    if 0 not in present or 3 not in present:
        raise ValueError(f"ranking needs sentences with label 0 and label 3, got labels {present}")
    centred = activations - activations.mean(0)
    label_centred = labels - labels.mean()
    denominator = np.sqrt((centred**2).sum(0) * (label_centred**2).sum())
    pearson = np.divide(centred.T @ label_centred, denominator, out=np.zeros(activations.shape[1]), where=denominator > 0)
    means = np.stack([activations[labels == value].mean(0) if (labels == value).any() else np.full(activations.shape[1], np.nan)
                      for value in range(4)])
    low, high = activations[labels == 0], activations[labels == 3]
    pooled = np.sqrt((low.var(0) + high.var(0)) / 2)
    gap = np.divide(high.mean(0) - low.mean(0), pooled, out=np.zeros(activations.shape[1]), where=pooled > 0)
    threshold = np.percentile(low, 95, axis=0)
    tpr_minus_fpr = (high > threshold).mean(0) - (low > threshold).mean(0)
    observed = means[~np.isnan(means).any(1)]
    rise = high.mean(0) - low.mean(0)
    monotonic = (rise > 0) & (np.diff(observed, axis=0) >= -0.1 * np.abs(rise)).all(0)
    return [
        FeatureScore(layer, i, float(pearson[i]), float(gap[i]), float(tpr_minus_fpr[i]), bool(monotonic[i]),
                     tuple(float(m) for m in means[:, i]))
        for i in range(activations.shape[1])
    ]


def rank_features(scores: list[FeatureScore], top: int = 20, monotonic_only: bool = True) -> list[FeatureScore]:
    """The ``top`` features by Pearson correlation, monotonic ones only unless asked otherwise."""
    candidates = [s for s in scores if s.monotonic] if monotonic_only else list(scores)
    return sorted(candidates, key=lambda s: (-s.pearson, -s.gap))[:top]
