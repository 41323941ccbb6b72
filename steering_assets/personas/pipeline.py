"""Persona dataset and training-split artifacts: build, fingerprint, skip when unchanged, load.

Plain Python, usable from a notebook:

    store = ArtifactStore("artifacts")
    ref = PersonaRef(ROLES, "qwen-3-4b", "pirate")
    materialize_persona_dataset(ref, "data", store)
    materialize_training_split(ref, store, tokenizer, BudgetConfig())
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from steering_assets.artifacts import ArtifactResult, ArtifactStore, file_digest, fingerprint
from steering_assets.personas.budget import BudgetConfig, SelectionConfig, TrainingSplit, build_training_split
from steering_assets.personas.dataset import build_persona_dataset
from steering_assets.personas.layout import PersonaRef

# Bump when the logic that produces an artifact changes, so old artifacts are rebuilt.
DATASET_CODE_VERSION = "1"
SPLIT_CODE_VERSION = "2"

DATASET_FILE = "dataset.parquet"
TRAIN_FILE = "train.parquet"
VALIDATION_FILE = "validation.parquet"


def rollout_data_version(ref: PersonaRef, data_root: Path | str) -> str:
    """Content hash of a persona's raw files; it changes exactly when their bytes change."""
    paths = (ref.responses_path(data_root), ref.scores_path(data_root))
    return fingerprint({path.name: file_digest(path) if path.is_file() else "<absent>" for path in paths})[:32]


def dataset_folder(store: ArtifactStore, ref: PersonaRef) -> Path:
    asset = "baseline_dataset" if ref.is_baseline else "persona_dataset"
    return store.folder(ref.kind.name, asset, ref.source_model, ref.name)


def split_folder(store: ArtifactStore, ref: PersonaRef) -> Path:
    return store.folder(ref.kind.name, "persona_training_split", ref.source_model, ref.name)


def score_histogram(frame: pl.DataFrame) -> dict[str, int]:
    """Counts per score value (and 'REFUSAL' / 'missing'), ordered by score."""
    counts = frame.group_by("extract_score", "score_status").len().sort("extract_score", nulls_last=True)
    histogram: dict[str, int] = {}
    for score, status, count in counts.iter_rows():
        histogram[str(score) if score is not None else status] = int(count)
    return histogram


def materialize_persona_dataset(ref: PersonaRef, data_root: Path | str, store: ArtifactStore) -> ArtifactResult:
    """Join rollouts and scores into ``dataset.parquet`` (skipped if inputs are unchanged)."""
    input_version = rollout_data_version(ref, data_root)
    key = fingerprint({"code": DATASET_CODE_VERSION, "rollouts": input_version})
    folder = dataset_folder(store, ref)
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True)
    frame, report = build_persona_dataset(ref, data_root)
    details = {
        "rows": frame.height,
        "rollout_data_version": input_version,
        "join": report.as_dict(),
        "score_histogram": score_histogram(frame),
        "labels": dict(frame.group_by("label").len().sort("label").iter_rows()),
    }
    manifest = store.write_artifact(
        folder, {DATASET_FILE: frame.write_parquet}, fingerprint_value=key, details=details
    )
    return ArtifactResult(folder, manifest, skipped=False)


def load_persona_dataset(store: ArtifactStore, ref: PersonaRef) -> pl.DataFrame:
    folder = dataset_folder(store, ref)
    store.load_manifest(folder)
    return pl.read_parquet(folder / DATASET_FILE)


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What about a tokenizer changes token counts: its name, vocabulary size and chat template."""
    template = getattr(tokenizer, "chat_template", None) or ""
    return {
        "name": getattr(tokenizer, "name_or_path", type(tokenizer).__name__),
        "vocab": len(tokenizer),
        "chat_template": hashlib.sha256(template.encode()).hexdigest()[:16],
    }


def materialize_training_split(
    ref: PersonaRef,
    store: ArtifactStore,
    tokenizer: Any,
    budget: BudgetConfig,
    selection: SelectionConfig | None = None,
) -> ArtifactResult:
    """Filter, count chat tokens and cut the seeded train/validation split of one persona."""
    if ref.is_baseline:
        raise ValueError(f"{ref.partition_key} is a baseline: it has no scores and is not training data")
    selection = selection or SelectionConfig.defaults_for(ref.kind)
    dataset_manifest = store.load_manifest(dataset_folder(store, ref))
    key = fingerprint(
        {
            "code": SPLIT_CODE_VERSION,
            "dataset": dataset_manifest["fingerprint"],
            "tokenizer": tokenizer_identity(tokenizer),
            "budget": asdict(budget),
            "selection": asdict(selection),
        }
    )
    folder = split_folder(store, ref)
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True)
    frame = load_persona_dataset(store, ref)
    split = build_training_split(frame, tokenizer, selection, budget)
    details = split_details(split, frame.height, selection)
    manifest = store.write_artifact(
        folder,
        {TRAIN_FILE: split.train.write_parquet, VALIDATION_FILE: split.validation.write_parquet},
        fingerprint_value=key,
        details=details,
    )
    return ArtifactResult(folder, manifest, skipped=False)


def split_details(split: TrainingSplit, dataset_rows: int, selection: SelectionConfig) -> dict[str, Any]:
    return {
        "dataset_rows": dataset_rows,
        "candidates": split.candidates,
        "rows_tokenised": split.rows_counted,
        "train_rows": split.train.height,
        "validation_rows": split.validation.height,
        "train_tokens": split.train_tokens,
        "validation_tokens": split.validation_tokens,
        "train_budget": split.config.train_tokens,
        "validation_budget": split.config.validation_tokens,
        "train_budget_reached": split.train_budget_reached,
        "dropped": dict(sorted(split.dropped.items())),
        "selection": asdict(selection),
        "kept_score_histogram": score_histogram(pl.concat([split.train, split.validation])),
    }


def load_training_split(store: ArtifactStore, ref: PersonaRef) -> tuple[pl.DataFrame, pl.DataFrame]:
    folder = split_folder(store, ref)
    store.load_manifest(folder)
    return pl.read_parquet(folder / TRAIN_FILE), pl.read_parquet(folder / VALIDATION_FILE)
