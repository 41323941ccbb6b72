"""Score filtering, chat-template token counting and the seeded token-budget split."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import polars as pl

from steering_assets.core.errors import InputError
from steering_assets.formats.rollouts import PersonaKind
from steering_assets.personas.dataset import SCORE_MISSING, SCORE_REFUSAL

DROP_WRONG_LABEL = "wrong_label"
DROP_MISSING_SCORE = "missing_score"
DROP_REFUSAL = "refusal"
DROP_BELOW_THRESHOLD = "below_threshold"
DROP_OVER_BUDGET = "over_budget"
DROP_HELD_OUT_QUESTION = "held_out_question"


@dataclass(frozen=True)
class SelectionConfig:
    min_score: int
    keep_labels: tuple[str, ...]

    @classmethod
    def defaults_for(cls, kind: PersonaKind) -> "SelectionConfig":
        return cls(kind.default_keep_min_score, kind.default_keep_labels)


class SelectionError(InputError, ValueError):
    """Selection settings that do not fit a persona kind's labels."""


def check_selection(selection: SelectionConfig, kind: PersonaKind) -> None:
    """Refuse labels the writers never emit and baseline labels, which are never training rows."""
    if not selection.keep_labels:
        raise SelectionError(f"keep_labels is empty: no {kind.column} row could be kept; e.g. {list(kind.default_keep_labels)}")
    unknown = [label for label in selection.keep_labels if label not in kind.labels]
    if unknown:
        raise SelectionError(f"keep_labels {unknown} are not {kind.column} labels; the writers emit {list(kind.labels)}")
    baselines = [label for label in selection.keep_labels if label in kind.baseline_labels]
    if baselines:
        raise SelectionError(
            f"keep_labels {baselines}: those rows are baselines (the assistant without the persona), never training "
            f"rows; keep some of {[label for label in kind.labels if label not in kind.baseline_labels]}"
        )


def first_user_turn(column: str = "messages") -> pl.Expr:
    """The content of each row's first user turn (null when there is none)."""
    return (
        pl.col(column)
        .list.eval(pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content"))
        .list.first()
    )


def rows_starting_with_instruction(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows whose user turn still starts with their own non-empty persona instruction.

    After ``loading.training_turns`` this finds instructions joined to the question in a
    way the writers do not use (another separator, extra whitespace): such a row teaches
    what the prompt already says.
    """
    if frame.is_empty():
        return frame
    user = first_user_turn()
    return frame.filter(
        (pl.col("system_prompt").str.len_chars() > 0)
        & user.is_not_null()
        & user.str.starts_with(pl.col("system_prompt"))
    )


@dataclass(frozen=True)
class BudgetConfig:
    train_tokens: int = 100_000
    validation_tokens: int = 10_000
    seed: int = 42
    batch_size: int = 256
    # Questions whose rows never enter either split, so the evaluations have instructions nothing was trained on.
    held_out_questions: int = 0

    def __post_init__(self) -> None:
        if self.train_tokens <= 0 or self.validation_tokens < 0:
            raise ValueError(
                f"token budgets must be positive (train) and non-negative (validation), "
                f"got train={self.train_tokens}, validation={self.validation_tokens}"
            )
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.held_out_questions < 0:
            raise ValueError(f"held_out_questions must be >= 0, got {self.held_out_questions}")


def reserved_questions(questions: Sequence[str], count: int, seed: int) -> list[str]:
    """``count`` distinct questions drawn with ``seed`` from ``questions`` (first-seen order kept), for evaluation only.

    Raises SelectionError when that leaves no question to train on."""
    distinct = list(dict.fromkeys(q for q in questions if q))
    if count and count >= len(distinct):
        raise SelectionError(
            f"held_out_questions={count}, but the kept rows ask only {len(distinct)} distinct question(s): nothing would "
            "be left to train on; lower held_out_questions or generate rollouts for more questions")
    picked = set(np.random.default_rng(seed).permutation(len(distinct))[:count].tolist())
    return [q for i, q in enumerate(distinct) if i in picked]


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


class ChatTemplateMissingError(InputError, ValueError):
    """The target tokenizer cannot render conversations, so lengths cannot be counted."""


def _require_chat_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise ChatTemplateMissingError(
            f"tokenizer {name!r} has no chat template; persona datasets are measured in chat-formatted "
            "tokens, so point the model setting at an instruct/chat model (or set tokenizer.chat_template)"
        )


def _encoded_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token counts of already-rendered texts, encoded as one batch."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and not getattr(tokenizer, "split_special_tokens", False):
        # The Rust tokenizer encodes the batch on all cores; skipping offsets saves a third.
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [len(encoding.ids) for encoding in encode(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]]


def chat_token_lengths(tokenizer: Any, conversations: Sequence[list[dict[str, str]]], batch_size: int = 256) -> list[int]:
    """Token count of each conversation under the tokenizer's chat template, in batches.

    Each batch is rendered with ``apply_chat_template`` and then encoded in one call,
    so the counts equal ``len(apply_chat_template(conversation, tokenize=True))``.
    """
    _require_chat_template(tokenizer)
    lengths: list[int] = []
    for start in range(0, len(conversations), batch_size):
        batch = list(conversations[start : start + batch_size])
        # The rendered template already holds every special token.
        lengths.extend(_encoded_lengths(tokenizer, tokenizer.apply_chat_template(batch, tokenize=False)))
    return lengths




class BudgetFiller:
    """Takes rows in shuffled order: into train while they fit, then into validation while they fit.

    The first row that does not fit the train budget ends train (the budget is
    "filled") and is offered to validation; the first that does not fit validation
    ends the split. Rows never offered are over budget.
    """

    def __init__(self, config: BudgetConfig):
        self.config = config
        self.train: list[int] = []
        self.validation: list[int] = []
        self.train_tokens = 0
        self.validation_tokens = 0
        self.train_full = False
        self.done = False

    def offer(self, index: int, length: int) -> None:
        if self.done:
            return
        if not self.train_full:
            if self.train_tokens + length <= self.config.train_tokens:
                self.train.append(index)
                self.train_tokens += length
                self.train_full = self.train_tokens == self.config.train_tokens
                return
            self.train_full = True
        if self.validation_tokens + length <= self.config.validation_tokens:
            self.validation.append(index)
            self.validation_tokens += length
        else:
            self.done = True

    def rows_still_wanted(self, mean_length: float) -> int:
        """Roughly how many more rows could fit, from the mean length seen so far."""
        if self.done:
            return 0
        remaining = self.config.validation_tokens - self.validation_tokens
        if not self.train_full:
            remaining += self.config.train_tokens - self.train_tokens
        return int(remaining / max(mean_length, 1.0)) + 1


def shuffled_order(n_rows: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).permutation(n_rows).tolist()


def budget_split(lengths: Sequence[int], config: BudgetConfig) -> tuple[list[int], list[int]]:
    """Train and validation row indices (in shuffled order) for known lengths."""
    filler = BudgetFiller(config)
    for index in shuffled_order(len(lengths), config.seed):
        filler.offer(index, lengths[index])
        if filler.done:
            break
    return filler.train, filler.validation


@dataclass
class TrainingSplit:
    train: pl.DataFrame
    validation: pl.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    train_budget_reached: bool = False  # train ended because a row no longer fit
    rows_counted: int = 0  # rows whose tokens were counted (the rest were never needed)
    config: BudgetConfig = field(default_factory=BudgetConfig)

    @property
    def train_tokens(self) -> int:
        return int(self.train["length"].sum()) if self.train.height else 0

    @property
    def validation_tokens(self) -> int:
        return int(self.validation["length"].sum()) if self.validation.height else 0


def build_training_split(
    frame: pl.DataFrame,
    tokenizer: Any,
    selection: SelectionConfig,
    config: BudgetConfig,
) -> TrainingSplit:
    """Filter by score and label, then fill the budgets in seeded order, counting tokens lazily.

    Tokens are counted batch by batch in shuffled order, and counting stops once both
    budgets are filled: with real rollouts (several times more kept tokens than the
    budget) most rows are never tokenised.
    """
    kept, dropped = select_training_rows(frame, selection)
    if config.held_out_questions:
        reserved = reserved_questions(kept["question"].to_list(), config.held_out_questions, config.seed)
        before = kept.height
        kept = kept.filter(~pl.col("question").is_in(reserved))
        dropped[DROP_HELD_OUT_QUESTION] = before - kept.height
    conversations = kept["messages"].to_list()
    order = shuffled_order(kept.height, config.seed)
    filler = BudgetFiller(config)
    lengths: dict[int, int] = {}
    position = 0
    while position < len(order) and not filler.done:
        mean = sum(lengths.values()) / len(lengths) if lengths else 0.0
        wanted = filler.rows_still_wanted(mean) if lengths else config.batch_size
        # Over-ask by 10% so one short batch rarely leaves a second tiny one.
        size = max(16, min(config.batch_size, int(wanted * 1.1) + 1))
        indices = order[position : position + size]
        position += len(indices)
        for index, length in zip(indices, chat_token_lengths(tokenizer, [conversations[i] for i in indices], size)):
            lengths[index] = length
            filler.offer(index, length)
            if filler.done:
                break
    with_length = kept.with_columns(
        pl.Series("length", [lengths.get(i) for i in range(kept.height)], dtype=pl.Int64)
    )
    over_budget = kept.height - len(filler.train) - len(filler.validation)
    if over_budget:
        dropped[DROP_OVER_BUDGET] = over_budget
    return TrainingSplit(
        train=with_length[filler.train] if filler.train else with_length.clear(),
        validation=with_length[filler.validation] if filler.validation else with_length.clear(),
        dropped=dropped,
        candidates=kept.height,
        train_budget_reached=filler.train_full,
        rows_counted=len(lengths),
        config=config,
    )
