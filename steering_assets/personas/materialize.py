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

from steering_assets.core.artifacts import ArtifactResult, ArtifactStore, fingerprint
from steering_assets.formats.rollouts import PersonaRef, rollout_data_version
from steering_assets.personas.budget import (
    BudgetConfig,
    SelectionConfig,
    TrainingSplit,
    build_training_split,
    check_selection,
    rows_starting_with_instruction,
)
from steering_assets.personas.dataset import baseline_rows, build_persona_dataset

# Bump when the logic that produces an artifact changes, so old artifacts are rebuilt.
# Dataset 2: every writer label, instructions removed from user turns, older shapes read.
DATASET_CODE_VERSION = "2"
SPLIT_CODE_VERSION = "3"

DATASET_FILE = "dataset.parquet"
TRAIN_FILE = "train.parquet"
VALIDATION_FILE = "validation.parquet"




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
        "layout": report.layout,
        "join": report.as_dict(),
        "score_histogram": score_histogram(frame),
        "labels": rows_by_label(frame),
    }
    manifest = store.write_artifact(
        folder, {DATASET_FILE: frame.write_parquet}, fingerprint_value=key, details=details
    )
    return ArtifactResult(folder, manifest, skipped=False)


def rows_by_label(frame: pl.DataFrame) -> dict[str, int]:
    return {str(label): int(n) for label, n in frame.group_by("label").len().sort("label").iter_rows()}


def load_persona_dataset(store: ArtifactStore, ref: PersonaRef) -> pl.DataFrame:
    folder = dataset_folder(store, ref)
    store.load_manifest(folder)
    return pl.read_parquet(folder / DATASET_FILE)


def load_baseline_rows(store: ArtifactStore, ref: PersonaRef) -> pl.DataFrame:
    """The persona's own baseline rows (roles ``default``, traits ``neutral``/``default``): the
    assistant answering the same questions without the persona, for use as negatives.
    Empty when the writer ran without them (persona-subspace's include-default option off)."""
    return baseline_rows(load_persona_dataset(store, ref), ref.kind)


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
    check_selection(selection, ref.kind)
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
    kept = pl.concat([split.train, split.validation])
    wrapped = rows_starting_with_instruction(kept)
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
        "kept_score_histogram": score_histogram(kept),
        "kept_rows_by_label": rows_by_label(kept),
        "instruction_removed_rows": int(kept["instruction_removed"].sum()) if kept.height else 0,
        # Training rows whose user turn still starts with their persona's instruction.
        "rows_starting_with_instruction": wrapped.height,
        "rows_starting_with_instruction_examples": [
            f"{row['label']}_p{row['prompt_index']}_q{row['question_index']}" for row in wrapped.head(5).iter_rows(named=True)
        ],
    }


def load_training_split(store: ArtifactStore, ref: PersonaRef) -> tuple[pl.DataFrame, pl.DataFrame]:
    folder = split_folder(store, ref)
    store.load_manifest(folder)
    return pl.read_parquet(folder / TRAIN_FILE), pl.read_parquet(folder / VALIDATION_FILE)
