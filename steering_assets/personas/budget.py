"""Score filtering, chat-template token counting and the seeded token-budget split."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import polars as pl

from steering_assets.personas.dataset import SCORE_MISSING, SCORE_REFUSAL
from steering_assets.personas.layout import PersonaKind

DROP_WRONG_LABEL = "wrong_label"
DROP_MISSING_SCORE = "missing_score"
DROP_REFUSAL = "refusal"
DROP_BELOW_THRESHOLD = "below_threshold"
DROP_OVER_BUDGET = "over_budget"


@dataclass(frozen=True)
class SelectionConfig:
    min_score: int
    keep_labels: tuple[str, ...]

    @classmethod
    def defaults_for(cls, kind: PersonaKind) -> "SelectionConfig":
        return cls(kind.default_keep_min_score, kind.default_keep_labels)


@dataclass(frozen=True)
class BudgetConfig:
    train_tokens: int = 100_000
    validation_tokens: int = 10_000
    seed: int = 42
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.train_tokens <= 0 or self.validation_tokens < 0:
            raise ValueError(
                f"token budgets must be positive (train) and non-negative (validation), "
                f"got train={self.train_tokens}, validation={self.validation_tokens}"
            )
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def select_training_rows(frame: pl.DataFrame, selection: SelectionConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    """Keep rows with an allowed label and a score >= min_score; count the rest by reason.

    Reasons are checked in order (label, missing, refusal, threshold), so each
    dropped row is counted once under its first reason.
    """
    reason = (
        pl.when(~pl.col("label").is_in(list(selection.keep_labels)))
        .then(pl.lit(DROP_WRONG_LABEL))
        .when(pl.col("score_status") == SCORE_MISSING)
        .then(pl.lit(DROP_MISSING_SCORE))
        .when(pl.col("score_status") == SCORE_REFUSAL)
        .then(pl.lit(DROP_REFUSAL))
        .when(pl.col("extract_score") < selection.min_score)
        .then(pl.lit(DROP_BELOW_THRESHOLD))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("_drop_reason")
    )
    tagged = frame.with_columns(reason)
    dropped = Counter(tagged["_drop_reason"].drop_nulls().to_list())
    kept = tagged.filter(pl.col("_drop_reason").is_null()).drop("_drop_reason")
    return kept, dict(dropped)


class ChatTemplateMissingError(ValueError):
    """The target tokenizer cannot render conversations, so lengths cannot be counted."""


def _require_chat_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise ChatTemplateMissingError(
            f"tokenizer {name!r} has no chat template; persona datasets are measured in chat-formatted "
            "tokens, so point the model setting at an instruct/chat model (or set tokenizer.chat_template)"
        )


def chat_token_lengths(tokenizer: Any, conversations: Sequence[list[dict[str, str]]], batch_size: int = 256) -> list[int]:
    """Token count of each conversation under the tokenizer's chat template, in batches.

    Rendering is done per batch and tokenisation in one call per batch, which lets a
    fast (Rust) tokenizer encode the whole batch at once.
    """
    _require_chat_template(tokenizer)
    lengths: list[int] = []
    for start in range(0, len(conversations), batch_size):
        batch = list(conversations[start : start + batch_size])
        texts = tokenizer.apply_chat_template(batch, tokenize=False)
        # The rendered template already holds every special token.
        encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)
        lengths.extend(len(ids) for ids in encoded["input_ids"])
    return lengths


def chat_token_lengths_one_by_one(tokenizer: Any, conversations: Sequence[list[dict[str, str]]]) -> list[int]:
    """The reference way: one ``apply_chat_template(tokenize=True)`` call per conversation."""
    _require_chat_template(tokenizer)
    lengths = []
    for conversation in conversations:
        encoded = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)
        lengths.append(len(encoded["input_ids"]))
    return lengths


def budget_split(lengths: Sequence[int], config: BudgetConfig) -> tuple[list[int], list[int]]:
    """Shuffle row indices with the seed, then fill train first-fit, then validation first-fit.

    A row that would overflow the budget is skipped (a later, shorter one may still
    fit). Returns the chosen indices in shuffled order.
    """
    order = np.random.default_rng(config.seed).permutation(len(lengths))
    train: list[int] = []
    rest: list[int] = []
    used = 0
    for index in order.tolist():
        if used + lengths[index] <= config.train_tokens:
            train.append(index)
            used += lengths[index]
        else:
            rest.append(index)
    validation: list[int] = []
    used = 0
    for index in rest:
        if used + lengths[index] <= config.validation_tokens:
            validation.append(index)
            used += lengths[index]
    return train, validation


@dataclass
class TrainingSplit:
    train: pl.DataFrame
    validation: pl.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    config: BudgetConfig = field(default_factory=BudgetConfig)

    @property
    def train_tokens(self) -> int:
        return int(self.train["length"].sum()) if self.train.height else 0

    @property
    def validation_tokens(self) -> int:
        return int(self.validation["length"].sum()) if self.validation.height else 0

    @property
    def train_budget_reached(self) -> bool:
        # Any candidate left out of train means the budget, not the data, was the limit.
        return self.train.height < self.candidates or self.train_tokens == self.config.train_tokens


def build_training_split(
    frame: pl.DataFrame,
    tokenizer: Any,
    selection: SelectionConfig,
    config: BudgetConfig,
) -> TrainingSplit:
    """Filter by score and label, count chat tokens in batches, and cut the seeded budget split."""
    kept, dropped = select_training_rows(frame, selection)
    lengths = chat_token_lengths(tokenizer, kept["messages"].to_list(), batch_size=config.batch_size)
    kept = kept.with_columns(pl.Series("length", lengths, dtype=pl.Int64))
    train_idx, val_idx = budget_split(lengths, config)
    over_budget = kept.height - len(train_idx) - len(val_idx)
    if over_budget:
        dropped[DROP_OVER_BUDGET] = over_budget
    return TrainingSplit(
        train=kept[train_idx] if train_idx else kept.clear(),
        validation=kept[val_idx] if val_idx else kept.clear(),
        dropped=dropped,
        candidates=kept.height,
        config=config,
    )
