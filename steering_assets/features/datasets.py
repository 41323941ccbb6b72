"""Classifier datasets built from sentence feature NPZs (final tokens only).

Strategies:
- ``embedding-to-concept``: sentence embedding -> concept-strength label;
- ``hidden-to-concept``: hidden states of one or several layers (concatenated) -> label;
- ``embedding-to-feature``: sentence embedding -> one SAE feature's activation;
- ``hidden-to-feature``: hidden states -> one SAE feature's activation.

Normalisation of X: ``standardize``, ``minmax`` or ``none``, with its parameters saved.

Layers are ids, never positions: a layer id is looked up in the feature NPZ's arrays of
ids. ``activations`` rows are the ``layers`` ids (the SAEs). ``hidden_states`` rows are the
``hidden_state_layers`` ids where the NPZ has them (our writer: every decoder block) and
otherwise the ``layers`` ids: the original s1 writer (TRACING-TRAIT-EMERGENCE
``extract_sae_features.py``) stores one hidden-state row per SAE configuration, and its
dataset generator looks each layer up with ``np.where(layers == layer)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from steering_assets.core.artifacts import write_npz
from steering_assets.core.errors import InputError
from steering_assets.features.layers import parse_layers
from steering_assets.features.prefixes import SentenceFeatures

STRATEGIES = ("embedding-to-feature", "hidden-to-feature", "hidden-to-concept", "embedding-to-concept")
NORMALISATIONS = ("standardize", "minmax", "none")


class DatasetSpecError(InputError, ValueError):
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
        if self.strategy == "hidden-to-feature" and not self.layers and self.target_layer is not None:
            # The original generator's default: the input layer is the target layer.
            object.__setattr__(self, "layers", str(self.target_layer))
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


def hidden_state_layer_ids(features: SentenceFeatures, where: str | None = None) -> list[int]:
    """The layer id of each ``hidden_states`` row (see the module docstring).

    Raises DatasetSpecError when the ids do not match the rows, naming both.
    """
    where = where or f"sentence {features.sentence_index}"
    own = features.hidden_state_layers is not None
    ids = [int(x) for x in (features.hidden_state_layers if own else features.layers)]
    rows = features.hidden_states.shape[0]
    if len(ids) != rows:
        key = "hidden_state_layers" if own else "layers"
        raise DatasetSpecError(
            f"{where}: hidden_states has {rows} layer rows but {key!r} lists {len(ids)} layer ids {ids}; without "
            "'hidden_state_layers' the rows must be the 'layers' ids, one per SAE configuration, as the s1 writer "
            "stores them (rematerialise concepts/sentence_features if this NPZ is ours)"
        )
    return ids


def layer_row(ids: Sequence[int], layer: int, what: str, where: str) -> int:
    """The row of layer id ``layer`` in an NPZ's ``ids``; an id not there is an error naming the ids that are."""
    rows = [i for i, x in enumerate(ids) if x == layer]
    if not rows:
        raise DatasetSpecError(f"{where}: layer {layer} is not among the {what} layers of the feature NPZs {list(ids)}")
    return rows[0]


def _consistent_layers(features: Sequence[SentenceFeatures]) -> tuple[list[int], list[int]]:
    """Hidden-state and SAE layer ids shared by every sentence, checked."""
    first = features[0]
    hidden, sae = hidden_state_layer_ids(first), [int(x) for x in first.layers]
    for f in features[1:]:
        if hidden_state_layer_ids(f) != hidden or [int(x) for x in f.layers] != sae:
            raise DatasetSpecError(
                f"sentence {f.sentence_index} has hidden-state layers {hidden_state_layer_ids(f)} and SAE layers "
                f"{[int(x) for x in f.layers]}, sentence {first.sentence_index} has {hidden} and {sae}; "
                "build a dataset from NPZs of one feature run"
            )
    return hidden, sae


def build_classifier_dataset(features: Sequence[SentenceFeatures], spec: DatasetSpec) -> dict[str, np.ndarray]:
    """The arrays of one classifier-dataset NPZ (keys as in docs/assets.md, concepts/classifier_datasets).

    Final tokens only. Layers in ``spec`` are ids, looked up in the NPZs (module docstring);
    ``meta_input_layers`` and ``meta_target_layer`` record ids. Raises DatasetSpecError for a
    layer id absent from the NPZs (naming the ids present), a target feature beyond the SAE
    width, a target layer with two SAEs, NPZs of different runs and non-finite inputs;
    LayerSpecError for an unreadable layer spec.
    """
    if not features:
        raise DatasetSpecError("no sentence features to build a dataset from")
    first = features[0]
    hidden_ids, sae_ids = _consistent_layers(features)
    final = [int(np.flatnonzero(f.is_final_token)[-1]) for f in features]
    arrays: dict[str, np.ndarray] = {"meta_strategy": np.str_(spec.strategy)}
    if spec.strategy.startswith("embedding"):
        x = np.stack([f.embeddings[i] for f, i in zip(features, final)])
        arrays.update(meta_input_source=np.str_("embedding"), meta_input_layers=np.zeros(0, dtype=np.int64),
                      meta_input_dims=np.array([x.shape[1]], dtype=np.int64))
    else:
        layers = parse_layers(spec.layers)
        rows = [layer_row(hidden_ids, layer, "hidden-state", spec.name) for layer in layers]
        x = np.stack([np.concatenate([f.hidden_states[row, i] for row in rows]) for f, i in zip(features, final)])
        arrays.update(meta_input_source=np.str_("hidden"), meta_input_layers=np.array(layers, dtype=np.int64),
                      meta_input_dims=np.array([first.hidden_states.shape[2]] * len(layers), dtype=np.int64))
    if not np.isfinite(x).all():
        raise DatasetSpecError(f"{spec.name}: non-finite values in the inputs; the feature NPZs are broken")
    if spec.strategy.endswith("concept"):
        y = np.array([f.concept_strength_label for f in features], dtype=np.int64)
    else:
        if spec.target_layer not in sae_ids:
            raise DatasetSpecError(f"{spec.name}: target layer {spec.target_layer} has no SAE; SAE layers are {sae_ids}")
        if sae_ids.count(spec.target_layer) > 1:
            l0s = [float(first.average_l0s[i]) for i, x in enumerate(sae_ids) if x == spec.target_layer]
            raise DatasetSpecError(
                f"{spec.name}: target layer {spec.target_layer} has {len(l0s)} SAEs (average L0 {l0s}) in the feature NPZs; "
                "keep one SAE per layer in the feature run"
            )
        row = layer_row(sae_ids, spec.target_layer, "SAE", spec.name)
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
