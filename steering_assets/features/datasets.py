"""Classifier datasets built from sentence feature NPZs (final tokens only).

Strategies:
- ``embedding-to-concept``: sentence embedding -> concept-strength label;
- ``hidden-to-concept``: hidden states of one or several layers (concatenated) -> label;
- ``embedding-to-feature``: sentence embedding -> one SAE feature's activation;
- ``hidden-to-feature``: hidden states -> one SAE feature's activation.

Normalisation of X: ``standardize``, ``minmax`` or ``none``, with its parameters saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from steering_assets.artifacts import write_npz
from steering_assets.features.layers import parse_layers
from steering_assets.features.prefixes import SentenceFeatures

STRATEGIES = ("embedding-to-feature", "hidden-to-feature", "hidden-to-concept", "embedding-to-concept")
NORMALISATIONS = ("standardize", "minmax", "none")


class DatasetSpecError(ValueError):
    """A classifier-dataset specification that cannot be built from the features at hand."""


@dataclass(frozen=True)
class DatasetSpec:
    strategy: str
    layers: str | None = None  # hidden-* strategies: "6", "0-2,10"
    target_layer: int | None = None  # *-to-feature strategies: the SAE layer ...
    target_feature: int | None = None  # ... and the feature index
    normalize: str = "standardize"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise DatasetSpecError(f"strategy {self.strategy!r} is not one of {list(STRATEGIES)}")
        if self.normalize not in NORMALISATIONS:
            raise DatasetSpecError(f"normalize {self.normalize!r} is not one of {list(NORMALISATIONS)}")
        if self.strategy.startswith("hidden") and not self.layers:
            raise DatasetSpecError(f"{self.strategy} needs layers, e.g. '6' or '0-2,10'")
        if self.strategy.endswith("feature") and (self.target_layer is None or self.target_feature is None):
            raise DatasetSpecError(f"{self.strategy} needs target_layer and target_feature")

    @property
    def name(self) -> str:
        parts = [self.strategy]
        if self.layers:
            parts.append("L" + self.layers.replace(",", "_"))
        if self.target_feature is not None:
            parts.append(f"t{self.target_layer}f{self.target_feature}")
        parts.append(self.normalize)
        return "__".join(parts)


def _normalise(x: np.ndarray, method: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    empty = np.zeros(0, dtype=np.float32)
    if method == "standardize":
        mean, std = x.mean(0), x.std(0)
        std = np.where(std > 0, std, 1.0)
        return (x - mean) / std, {"norm_mean": mean, "norm_std": std, "norm_min": empty, "norm_max": empty}
    if method == "minmax":
        low, high = x.min(0), x.max(0)
        span = np.where(high > low, high - low, 1.0)
        return (x - low) / span, {"norm_mean": empty, "norm_std": empty, "norm_min": low, "norm_max": high}
    return x, {"norm_mean": empty, "norm_std": empty, "norm_min": empty, "norm_max": empty}


def build_classifier_dataset(features: Sequence[SentenceFeatures], spec: DatasetSpec) -> dict[str, np.ndarray]:
    """The arrays of one classifier-dataset NPZ (keys as in DESIGN.md)."""
    if not features:
        raise DatasetSpecError("no sentence features to build a dataset from")
    first = features[0]
    final = [int(np.flatnonzero(f.is_final_token)[-1]) for f in features]
    arrays: dict[str, np.ndarray] = {"meta_strategy": np.str_(spec.strategy)}
    if spec.strategy.startswith("embedding"):
        x = np.stack([f.embeddings[i] for f, i in zip(features, final)])
        arrays.update(meta_input_source=np.str_("embedding"), meta_input_layers=np.zeros(0, dtype=np.int64),
                      meta_input_dims=np.array([x.shape[1]], dtype=np.int64))
    else:
        layers = parse_layers(spec.layers, n_layers=first.hidden_states.shape[0])
        x = np.stack([np.concatenate([f.hidden_states[layer, i] for layer in layers]) for f, i in zip(features, final)])
        arrays.update(meta_input_source=np.str_("hidden"), meta_input_layers=np.array(layers, dtype=np.int64),
                      meta_input_dims=np.array([first.hidden_states.shape[2]] * len(layers), dtype=np.int64))
    if not np.isfinite(x).all():
        raise DatasetSpecError(f"{spec.name}: non-finite values in the inputs; the feature NPZs are broken")
    if spec.strategy.endswith("concept"):
        y = np.array([f.concept_strength_label for f in features], dtype=np.int64)
    else:
        sae_layers = first.layers.tolist()
        if spec.target_layer not in sae_layers:
            raise DatasetSpecError(f"{spec.name}: target layer {spec.target_layer} has no SAE; SAE layers are {sae_layers}")
        row = sae_layers.index(spec.target_layer)
        width = first.activations.shape[2]
        if not 0 <= spec.target_feature < width:
            raise DatasetSpecError(
                f"{spec.name}: target feature {spec.target_feature} is beyond the SAE width {width} (features 0-{width - 1})"
            )
        y = np.array([f.activations[row, i, spec.target_feature] for f, i in zip(features, final)], dtype=np.float32)
        arrays.update(meta_target_layer=np.int64(spec.target_layer), meta_target_feature=np.int64(spec.target_feature),
                      meta_average_l0=np.float32(first.average_l0s[row]))
    x, norm = _normalise(x.astype(np.float64), spec.normalize)
    arrays.update(
        X=x.astype(np.float32), y=y, meta_n_samples=np.int64(len(features)),
        meta_sentence_indices=np.array([f.sentence_index for f in features], dtype=np.int64),
        norm_method=np.str_(spec.normalize), **{k: v.astype(np.float32) for k, v in norm.items()},
    )
    return arrays


def raw_inputs(dataset: dict[str, np.ndarray]) -> np.ndarray:
    """Undo the saved normalisation, so cross-validation can fit it inside each fold instead."""
    x, method = dataset["X"].astype(np.float64), str(dataset["norm_method"])
    if method == "standardize":
        return x * dataset["norm_std"] + dataset["norm_mean"]
    if method == "minmax":
        return x * np.where(dataset["norm_max"] > dataset["norm_min"], dataset["norm_max"] - dataset["norm_min"], 1.0) + dataset["norm_min"]
    return x


def save_dataset(arrays: dict[str, np.ndarray], path: Path) -> None:
    write_npz(arrays, path)


def load_dataset(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as err:
        raise DatasetSpecError(f"{path}: cannot be read without pickle ({err})") from None
