"""Steering-vector artifacts: train a chunk of personas together, write one artifact per persona.

    store = ArtifactStore("artifacts")
    results = materialize_steering_vectors([ref1, ref2], store, model, tokenizer, "model-id", SteeringTrainingConfig())
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from steering_assets.core.artifacts import ArtifactResult, ArtifactStore, fingerprint
from steering_assets.core.plots import line_plot_png
from steering_assets.formats.rollouts import PersonaRef
from steering_assets.personas.materialize import load_training_split, split_folder
from steering_assets.steering.config import (
    CONFIG_FILE,
    INTEROP_FILE,
    LOSS_CURVE_FILE,
    VECTOR_FILE,
    SteeringTrainingConfig,
)
from steering_assets.steering.training import (
    PersonaData,
    TrainedVector,
    TrainingOutcome,
    train_steering_vectors,
)
from steering_assets.steering.vectors import write_interop, write_vector

# 2: assistant-only loss with any chat template, loss normalised per accumulation window, exports.
VECTOR_CODE_VERSION = "2"


def vector_folder(store: ArtifactStore, ref: PersonaRef) -> Path:
    return store.folder(ref.kind.name, "steering_vector", ref.source_model, ref.name)


def vector_fingerprint(store: ArtifactStore, ref: PersonaRef, model_name: str, config: SteeringTrainingConfig) -> str:
    split = store.load_manifest(split_folder(store, ref), verify=False)
    return fingerprint({"code": VECTOR_CODE_VERSION, "split": split["fingerprint"], "model": model_name, "config": asdict(config)})


def loss_curve_png(trained: TrainedVector, title: str) -> bytes:
    def draw(axis) -> None:
        if trained.train_loss:
            steps, losses = zip(*trained.train_loss)
            axis.plot(steps, losses, label="train", linewidth=1)
        if trained.validation_loss:
            steps, losses = zip(*trained.validation_loss)
            axis.plot(steps, losses, "o-", label="validation", linewidth=1.5)
        if trained.best_step is not None:
            axis.axvline(trained.best_step, color="grey", linestyle=":", label=f"best (step {trained.best_step})")

    return line_plot_png(draw, "optimizer step", "loss", title)


def materialize_steering_vectors(
    refs: Sequence[PersonaRef],
    store: ArtifactStore,
    model: Any,
    tokenizer: Any,
    model_name: str,
    config: SteeringTrainingConfig,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, ArtifactResult]:
    """Train every persona whose vector is missing or stale in one batched run; reuse the rest."""
    from steering_assets.steering.export import ModelShape

    results: dict[str, ArtifactResult] = {}
    todo: list[tuple[PersonaRef, str]] = []
    for ref in refs:
        key = vector_fingerprint(store, ref, model_name, config)
        existing = store.current_manifest(vector_folder(store, ref), key)
        if existing is not None:
            results[ref.partition_key] = ArtifactResult(vector_folder(store, ref), existing, skipped=True)
        else:
            todo.append((ref, key))
    if not todo:
        return results
    personas = []
    for ref, _ in todo:
        train, validation = load_training_split(store, ref)
        personas.append(PersonaData(ref.partition_key, train["messages"].to_list(), validation["messages"].to_list()))
    # Checkpoints live under the artifact root, named by what is being trained, so a
    # re-run after a crash finds and resumes them.
    chunk = fingerprint([key for _, key in todo])[:16]
    checkpoints = store.folder(todo[0][0].kind.name, "steering_checkpoints", chunk)
    log(f"training {len(todo)} steering vector(s) together: {', '.join(r.partition_key for r, _ in todo)}")
    outcome = train_steering_vectors(model, tokenizer, personas, config, checkpoints, model_name=model_name, log=log)
    if outcome.resumed_from:
        log(f"resumed from checkpoint {outcome.resumed_from}")
    shape = ModelShape.of(model)
    for (ref, key), trained in zip(todo, outcome.vectors):
        results[ref.partition_key] = _write_vector_artifact(store, ref, key, trained, outcome, model_name, config, shape)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return results


def _write_vector_artifact(
    store: ArtifactStore,
    ref: PersonaRef,
    key: str,
    trained: TrainedVector,
    outcome: TrainingOutcome,
    model_name: str,
    config: SteeringTrainingConfig,
    shape,
) -> ArtifactResult:
    import json

    from steering_assets.steering.export import export_writers

    split_manifest = store.load_manifest(split_folder(store, ref), verify=False)
    exports, not_exported = export_writers(trained.vector, outcome.layer, shape)
    metrics = {
        "best_validation_loss": trained.best_validation_loss,
        "best_step": trained.best_step,
        "steps": trained.steps,
        "vector_norm": float(trained.vector.norm()),
        "tokens_per_second": round(outcome.tokens_per_second, 1),
        "trained_with": len(outcome.vectors),
        "assistant_only_loss": outcome.assistant_only_loss,
        "assistant_mask": outcome.assistant_mask,
        "loss_token_share": round(outcome.loss_token_share, 4),
        "rows_without_loss_tokens": outcome.rows_without_loss_tokens.get(ref.partition_key, 0),
        "final_train_loss": trained.train_loss[-1][1] if trained.train_loss else None,
    }
    steering_config = {
        "model": model_name,
        "layer": outcome.layer,
        "hidden_size": int(trained.vector.shape[0]),
        "persona": ref.name,
        "kind": ref.kind.name,
        "source_model": ref.source_model,
        "dataset_hash": split_manifest["fingerprint"],
        "training": asdict(config),
        "assistant_mask": outcome.assistant_mask,
        "metrics": metrics,
        "exports": {"files": sorted(exports), "not_exported": not_exported},
    }
    png = loss_curve_png(trained, f"{ref.partition_key} (layer {outcome.layer})")
    folder = vector_folder(store, ref)
    manifest = store.write_artifact(
        folder,
        {
            VECTOR_FILE: lambda p: write_vector(trained.vector, p),
            INTEROP_FILE: lambda p: write_interop(trained.vector, p),
            CONFIG_FILE: lambda p: p.write_text(json.dumps(steering_config, indent=2)),
            LOSS_CURVE_FILE: lambda p: p.write_bytes(png),
            **exports,
        },
        fingerprint_value=key,
        details={**metrics, "layer": outcome.layer, "train_loss": trained.train_loss, "validation_loss": trained.validation_loss,
                 "exports": sorted(exports), "not_exported": not_exported},
    )
    return ArtifactResult(folder, manifest, skipped=False)
