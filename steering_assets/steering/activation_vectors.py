"""Activation vectors (difference of means): the mean residual stream over a persona's replies minus the mean
over the baseline assistant's, at the trained vector's layer; stored as ``activation_vector.npy``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from steering_assets.core.artifacts import ArtifactResult, ArtifactStore, fingerprint
from steering_assets.formats.rollouts import PersonaRef
from steering_assets.personas.materialize import load_training_split
from steering_assets.steering.config import ACTIVATION_FILE, EVAL_CODE_VERSION
from steering_assets.steering.evaluation import assistant_mean_hidden
from steering_assets.steering.negatives import baseline_file_negatives, persona_negatives, sample, split_print
from steering_assets.steering.trained_vectors import vector_folder


def activation_folder(store: ArtifactStore, ref: PersonaRef) -> Path:
    return store.folder(ref.kind.name, "persona_activation_vector", ref.source_model, ref.name)


def materialize_activation_vectors(
    refs: Sequence[PersonaRef], store: ArtifactStore, model: Any, tokenizer: Any, model_name: str,
    rows: int = 256, seed: int = 0, log: Callable[[str], None] = print,
) -> dict[str, ArtifactResult]:
    """Mean reply activation of each persona's training split minus that of its negatives, at the vector's layer.

    The negatives are ``persona_negatives``: the source model's baseline files and the
    persona's own baseline rows, ``rows`` of them sampled with ``seed``.
    """
    from steering_assets.models.loading import padding_token_id
    from steering_assets.steering.export import ModelShape, export_writers
    from steering_assets.steering.vectors import read_vector

    padding_token_id(tokenizer, model_name)  # before any work: batches need a pad (or EOS) token
    shape = ModelShape.of(model)
    results: dict[str, ArtifactResult] = {}
    # Personas with the same negatives (baseline files only) share one baseline mean per layer.
    baseline_means: dict[tuple[tuple[str, ...], int], np.ndarray] = {}
    files = {model: baseline_file_negatives(store, model) for model in {ref.source_model for ref in refs}}
    for ref in refs:
        _, vector_config = read_vector(vector_folder(store, ref))
        layer = int(vector_config["layer"])
        negatives = persona_negatives(store, ref, files[ref.source_model])
        baseline = negatives.conversations
        key = fingerprint({"code": EVAL_CODE_VERSION, "split": split_print(store, ref), "baselines": negatives.prints,
                           "model": model_name, "layer": layer, "rows": rows, "seed": seed})
        folder = activation_folder(store, ref)
        existing = store.current_manifest(folder, key)
        if existing is not None:
            results[ref.partition_key] = ArtifactResult(folder, existing, skipped=True)
            continue
        mean_key = (tuple(negatives.prints), layer)
        if mean_key not in baseline_means:
            baseline_means[mean_key] = assistant_mean_hidden(
                model, tokenizer, sample(baseline, rows, seed), layer, model_name=model_name).mean(0)
        train = load_training_split(store, ref)[0]["messages"].to_list()
        persona_mean = assistant_mean_hidden(model, tokenizer, sample(train, rows, seed), layer, model_name=model_name).mean(0)
        vector = (persona_mean - baseline_means[mean_key]).astype(np.float32)
        log(f"{ref.partition_key}: activation vector at layer {layer}, norm {np.linalg.norm(vector):.3f}")
        exports, not_exported = export_writers(vector, layer, shape)
        for name, reason in not_exported.items():
            log(f"{ref.partition_key}: {name} not written: {reason}")
        manifest = store.write_artifact(
            folder,
            {ACTIVATION_FILE: lambda p, v=vector: _save_npy(v, p), **exports},
            fingerprint_value=key,
            details={"layer": layer, "norm": float(np.linalg.norm(vector)), "persona_rows": min(rows, len(train)),
                     "baseline_rows": min(rows, len(baseline)), "baselines": negatives.summary(used=min(rows, len(baseline))),
                     "exports": sorted(exports), "not_exported": not_exported},
        )
        results[ref.partition_key] = ArtifactResult(folder, manifest, skipped=False)
    return results


def _save_npy(array: np.ndarray, path: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def load_activation_vector(store: ArtifactStore, ref: PersonaRef) -> np.ndarray:
    folder = activation_folder(store, ref)
    store.load_manifest(folder)
    return np.load(folder / ACTIVATION_FILE, allow_pickle=False)
