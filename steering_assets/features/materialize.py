"""Artifacts of the interpretability stage, per concept: feature NPZs, ranked features, plots,
classifier datasets and cross-validated classifiers.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from steering_assets.core.artifacts import ArtifactResult, ArtifactStore, file_digest, fingerprint, write_npz
from steering_assets.core.names import validate_name
from steering_assets.core.plots import line_plot_png
from steering_assets.features.classifiers import MODELS, MODELS_VERSION, cross_validate, fit_best, models_for, task_of
from steering_assets.features.datasets import (
    DatasetSpec,
    build_classifier_dataset,
    hidden_state_layer_ids,
    save_dataset,
)
from steering_assets.features.layers import format_layers
from steering_assets.features.prefixes import SentenceFeatures, sentence_features
from steering_assets.features.ranking import FeatureScore, rank_features, score_features
from steering_assets.formats.concepts import concept_source, read_concept_sentences

# 2: layer L is block L's output (the last layer no longer reads the final norm); fragments start after BOS.
# 3: feature NPZs record hidden_state_layers; layers are looked up by id, never by position.
FEATURES_CODE_VERSION = "3"
RANKING_FILE = "top_features.json"


def _folder(store: ArtifactStore, asset: str, concept: str) -> Path:
    return store.folder("concepts", asset, validate_name(concept, "concept name"))


def _print(store: ArtifactStore, asset: str, concept: str) -> str:
    return store.load_manifest(_folder(store, asset, concept), verify=False)["fingerprint"]


def materialize_sentence_features(
    concept: str, concepts_root: Path, store: ArtifactStore, model: Any, tokenizer: Any, encoder: Any,
    saes: dict, sae_config: Path, model_name: str, batch_size: int = 16, log: Callable[[str], None] = print,
) -> ArtifactResult:
    """One NPZ per sentence with every prefix's embeddings, hidden states and SAE activations."""
    source = concept_source(concepts_root, concept)
    key = fingerprint({"code": FEATURES_CODE_VERSION, "sentences": file_digest(source), "model": model_name,
                       "saes": file_digest(sae_config), "layers": sorted(saes)})
    folder = _folder(store, "sentence_features", concept)
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True)
    rows = read_concept_sentences(source)
    features: list[SentenceFeatures] = []
    for start in range(0, len(rows), batch_size * 4):
        chunk = rows[start : start + batch_size * 4]
        features += sentence_features(model, tokenizer, encoder, saes, [r.sentence for r in chunk], [r.label for r in chunk],
                                      first_index=start, batch_size=batch_size)
        log(f"{concept}: features for {min(start + len(chunk), len(rows))}/{len(rows)} sentences")
    writers = {f"sentence_{f.sentence_index:05d}.npz": (lambda p, f=f: f.save(p)) for f in features}
    labels = [f.concept_strength_label for f in features]
    details = {"source": str(source), "sentences": len(features), "prefixes": int(sum(len(f.is_final_token) for f in features)),
               "layers": [int(x) for x in features[0].layers], "labels": {str(v): labels.count(v) for v in range(4)}}
    manifest = store.write_artifact(folder, writers, fingerprint_value=key, details=details)
    return ArtifactResult(folder, manifest, skipped=False)


def load_sentence_features(store: ArtifactStore, concept: str) -> list[SentenceFeatures]:
    folder = _folder(store, "sentence_features", concept)
    manifest = store.load_manifest(folder, verify=False)
    return [SentenceFeatures.load(folder / name) for name in sorted(manifest["files"])]


def materialize_top_features(concept: str, store: ArtifactStore, top: int = 20) -> ArtifactResult:
    key = fingerprint({"code": FEATURES_CODE_VERSION, "features": _print(store, "sentence_features", concept), "top": top})
    folder = _folder(store, "top_features", concept)
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True)
    features = load_sentence_features(store, concept)
    labels = np.array([f.concept_strength_label for f in features])
    ranked: list[FeatureScore] = []
    for row, layer in enumerate(features[0].layers.tolist()):
        final = np.stack([f.activations[row, -1] for f in features])
        ranked += rank_features(score_features(final, labels, layer), top=top)
    ranked = sorted(ranked, key=lambda s: -s.pearson)[:top]
    table = [asdict(s) for s in ranked]
    manifest = store.write_artifact(folder, {RANKING_FILE: lambda p: p.write_text(json.dumps(table, indent=2))},
                                    fingerprint_value=key, details={"top": table})
    return ArtifactResult(folder, manifest, skipped=False)


def activation_graph_png(features: Sequence[SentenceFeatures], layer_row: int, feature: int, title: str) -> bytes:
    """Mean activation of one feature along the prefix position, one line per label."""

    def draw(axis) -> None:
        for label in range(4):
            curves = [f.activations[layer_row, :, feature] for f in features if f.concept_strength_label == label]
            if not curves:
                continue
            width = max(len(c) for c in curves)
            padded = np.full((len(curves), width), np.nan)
            for i, curve in enumerate(curves):
                padded[i, : len(curve)] = curve
            axis.plot(np.arange(1, width + 1), np.nanmean(padded, axis=0), label=f"label {label}")

    return line_plot_png(draw, "prefix length (tokens)", "activation", title)


def materialize_activation_graphs(concept: str, store: ArtifactStore, count: int = 4) -> ArtifactResult:
    key = fingerprint({"code": FEATURES_CODE_VERSION, "features": _print(store, "sentence_features", concept),
                       "top": _print(store, "top_features", concept), "count": count})
    folder = _folder(store, "feature_activation_graphs", concept)
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True)
    features = load_sentence_features(store, concept)
    top = store.load_manifest(_folder(store, "top_features", concept), verify=False)["details"]["top"][:count]
    layers = features[0].layers.tolist()
    writers = {}
    for entry in top:
        png = activation_graph_png(features, layers.index(entry["layer"]), entry["feature"],
                                   f"{concept}: layer {entry['layer']} feature {entry['feature']} (r={entry['pearson']:.2f})")
        writers[f"layer{entry['layer']}_feature{entry['feature']}.png"] = lambda p, png=png: p.write_bytes(png)
    manifest = store.write_artifact(folder, writers, fingerprint_value=key, details={"graphs": sorted(writers)})
    return ArtifactResult(folder, manifest, skipped=False)


def default_dataset_specs(hidden_layers: Sequence[int], sae_layers: Sequence[int], top: list[dict]) -> list[DatasetSpec]:
    """A sensible default set: each input source to the concept, and to its best SAE feature.

    ``hidden_layers`` are the layer ids of the NPZs' hidden-state rows (ids, not positions).
    """
    ordered = sorted(int(x) for x in hidden_layers)
    specs = [
        DatasetSpec("embedding-to-concept"),
        DatasetSpec("hidden-to-concept", layers=str(ordered[len(ordered) // 2])),
        DatasetSpec("hidden-to-concept", layers=format_layers(ordered)),
    ]
    if top:
        best = top[0]
        specs += [
            DatasetSpec("embedding-to-feature", target_layer=best["layer"], target_feature=best["feature"]),
            DatasetSpec("hidden-to-feature", layers=str(best["layer"]), target_layer=best["layer"], target_feature=best["feature"]),
        ]
    return specs


def materialize_classifier_datasets(concept: str, store: ArtifactStore, specs: Sequence[DatasetSpec] | None = None) -> ArtifactResult:
    features = load_sentence_features(store, concept)
    top = store.load_manifest(_folder(store, "top_features", concept), verify=False)["details"]["top"]
    specs = list(specs) if specs else default_dataset_specs(hidden_state_layer_ids(features[0]), features[0].layers.tolist(), top)
    key = fingerprint({"code": FEATURES_CODE_VERSION, "features": _print(store, "sentence_features", concept),
                       "specs": [asdict(s) for s in specs]})
    folder = _folder(store, "classifier_datasets", concept)
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True)
    built = {f"{spec.name}.npz": build_classifier_dataset(features, spec) for spec in specs}
    writers = {name: (lambda p, arrays=arrays: save_dataset(arrays, p)) for name, arrays in built.items()}
    details = {"datasets": {name: {"samples": int(a["meta_n_samples"]), "dims": int(a["X"].shape[1])} for name, a in built.items()}}
    manifest = store.write_artifact(folder, writers, fingerprint_value=key, details=details)
    return ArtifactResult(folder, manifest, skipped=False)


def materialize_trait_classifiers(concept: str, store: ArtifactStore, models: Sequence[str] = MODELS, folds: int = 5, seed: int = 0) -> ArtifactResult:
    from steering_assets.features.datasets import load_dataset

    datasets_folder = _folder(store, "classifier_datasets", concept)
    datasets_manifest = store.load_manifest(datasets_folder)
    key = fingerprint({"code": FEATURES_CODE_VERSION, "models_version": MODELS_VERSION,
                       "datasets": datasets_manifest["fingerprint"], "models": list(models),
                       "folds": folds, "seed": seed})
    folder = _folder(store, "trait_classifiers", concept)
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True)
    results = []
    for name in sorted(datasets_manifest["files"]):
        dataset = load_dataset(datasets_folder / name)
        for model in [m for m in models if m in models_for(task_of(dataset))]:
            metrics = cross_validate(dataset, model, folds=folds, seed=seed)
            results.append({"dataset": name.removesuffix(".npz"), "strategy": str(dataset["meta_strategy"]),
                            "layers": dataset["meta_input_layers"].tolist(), **metrics})
    best = {}
    for row in results:
        score = row.get("roc_auc", row.get("accuracy")) if row["task"] == "classification" else row["r2"]
        if row["dataset"] not in best or score > best[row["dataset"]]["score"]:
            best[row["dataset"]] = {"model": row["model"], "score": score}
    summary = {"results": results, "best": best}
    writers: dict[str, Callable[[Path], None]] = {"summary.json": lambda p: p.write_text(json.dumps(summary, indent=2))}
    for dataset_name, choice in best.items():
        rows = [r for r in results if r["dataset"] == dataset_name]
        writers[f"{dataset_name}.metrics.json"] = lambda p, rows=rows: p.write_text(json.dumps(rows, indent=2))
        params = fit_best(load_dataset(datasets_folder / f"{dataset_name}.npz"), choice["model"], seed)
        writers[f"{dataset_name}.best_model.npz"] = lambda p, params=params: write_npz(params, p)
    manifest = store.write_artifact(folder, writers, fingerprint_value=key, details=summary)
    return ArtifactResult(folder, manifest, skipped=False)

