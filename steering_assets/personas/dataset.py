"""Join rollouts with judge scores into the processed persona-dataset schema."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from steering_assets.formats.rollouts import PersonaKind, PersonaRef, RolloutFormatError
from steering_assets.personas.loading import (
    KEY_QUESTION_PROMPT,
    PROMPT_INDEX_ASSUMED,
    PROMPT_INDEX_PAIR,
    REFUSAL,
    read_responses,
    read_scores_with_report,
    training_turns,
)

SCORE_SCORED = "scored"
SCORE_REFUSAL = "refusal"
SCORE_MISSING = "missing"

MESSAGE_DTYPE = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


def dataset_schema(name_column: str) -> dict[str, pl.DataType]:
    return {
        "model": pl.String,
        name_column: pl.String,
        "dataset_type": pl.String,
        "system_prompt": pl.String,
        "label": pl.String,
        "prompt_index": pl.Int64,
        "question_index": pl.Int64,
        "question": pl.String,
        "messages": MESSAGE_DTYPE,
        "extract_score": pl.Int64,
        # Why extract_score may be null: the judge refused, or no score was recorded.
        "score_status": pl.String,
        # The writer had put the instruction at the start of the user turn; it was removed.
        "instruction_removed": pl.Boolean,
    }


@dataclass
class JoinReport:
    """How rollouts and scores matched up, and what was read from older shapes; mismatches are reported, not fatal."""

    responses: int = 0
    scored: int = 0
    refusals: int = 0
    responses_without_score: int = 0
    scores_without_response: int = 0
    orphan_score_examples: list[str] = field(default_factory=list)
    layout: str = ""
    responses_path: str = ""
    scores_path: str = ""
    # Rows whose instruction was removed from the user turn (no system turn in the rollout).
    instruction_removed: int = 0
    baseline_rows: int = 0
    # Older shapes that were read: lines without prompt_index (prompt 0), with pair_index,
    # without question (taken from the user turn), and score keys by shape.
    prompt_index_assumed_0: int = 0
    prompt_index_from_pair_index: int = 0
    questions_from_user_turn: int = 0
    score_key_shapes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _check_key_labels(scores: dict, shapes: Counter, labels: Counter, kind: PersonaKind, path: Path) -> None:
    """Scores under a label with no responses at all mean the file belongs to another run."""
    present = set(labels)
    by_label = Counter(key.split("_", 1)[0] for key in scores)
    for key_label, count in sorted(by_label.items()):
        if key_label not in present:
            example = next(k for k in scores if k.startswith(f"{key_label}_"))
            rows = ", ".join(f"{label!r} ({labels_n})" for label, labels_n in sorted(labels.items()))
            readers = [lab for lab in kind.labels if kind.score_label(lab) == key_label]
            raise RolloutFormatError(
                f"{path}: {count} score keys (e.g. {example!r}) are labelled {key_label!r} "
                f"(rows labelled {' or '.join(repr(r) for r in readers)}), but the responses file has no such rows, "
                f"only {rows}; is this the score file of another rollout?"
            )
    if shapes.get(KEY_QUESTION_PROMPT) and set(labels) - {"pos"}:
        raise RolloutFormatError(
            f"{path}: keys of the label-less shape 'q<question>_p<prompt>' (assistant-axis scripts/3_judge.py) cannot "
            f"tell 'pos' rows from {sorted(set(labels) - {'pos'})} rows; rename them to 'pos_p<prompt>_q<question>' "
            "or re-score the file"
        )


def build_persona_dataset(ref: PersonaRef, data_root: Path | str) -> tuple[pl.DataFrame, JoinReport]:
    """Read one persona's rollouts (and scores, unless it is a baseline) into the processed schema.

    ``messages`` is the conversation the model should produce without the persona
    instruction (``loading.training_turns``). Raises RolloutFormatError for bad lines and
    keys (see ``loading``), a missing responses file (naming where each layout keeps it)
    and score keys under a label no response carries.
    """
    layout = ref.layout(data_root)
    responses_path = ref.responses_path(data_root)
    if not responses_path.is_file():
        places = " or ".join(f"{path} ({name})" for name, path in ref.candidate_responses(data_root).items())
        raise RolloutFormatError(f"{ref.partition_key}: no responses file; expected {places}")
    scores_path = ref.scores_path(data_root)
    responses = read_responses(responses_path, ref.kind)
    report = JoinReport(responses=len(responses), layout=layout.name, responses_path=str(responses_path),
                        scores_path="" if ref.is_baseline else str(scores_path))
    scores: dict = {}
    if not ref.is_baseline:
        scores, score_report = read_scores_with_report(scores_path, ref.kind)
        report.score_key_shapes = dict(sorted(score_report.shapes.items()))
        _check_key_labels(scores, score_report.shapes, Counter(r.score_label for r in responses), ref.kind, scores_path)
    rows = []
    for response in responses:
        score = scores.get(response.score_key)
        if score is None:
            status, value = SCORE_MISSING, None
            report.responses_without_score += 0 if ref.is_baseline else 1
        elif score == REFUSAL:
            status, value = SCORE_REFUSAL, None
            report.refusals += 1
        else:
            status, value = SCORE_SCORED, score
            report.scored += 1
        messages, removed = training_turns(response.conversation, response.system_prompt)
        report.instruction_removed += removed
        report.baseline_rows += response.label in ref.kind.baseline_labels
        report.prompt_index_assumed_0 += response.prompt_index_source == PROMPT_INDEX_ASSUMED
        report.prompt_index_from_pair_index += response.prompt_index_source == PROMPT_INDEX_PAIR
        report.questions_from_user_turn += response.question_from_user_turn
        rows.append(
            {
                "model": ref.source_model,
                ref.kind.column: ref.name,
                "dataset_type": ref.kind.name,
                "system_prompt": response.system_prompt,
                "label": response.label,
                "prompt_index": response.prompt_index,
                "question_index": response.question_index,
                "question": response.question,
                "messages": messages,
                "extract_score": value,
                "score_status": status,
                "instruction_removed": removed,
            }
        )
    if not ref.is_baseline:
        response_keys = {r.score_key for r in responses}
        orphans = sorted(k for k in scores if k not in response_keys)
        report.scores_without_response = len(orphans)
        report.orphan_score_examples = orphans[:10]
    frame = pl.DataFrame(rows, schema=dataset_schema(ref.kind.column))
    return frame, report


def baseline_rows(frame: pl.DataFrame, kind: PersonaKind) -> pl.DataFrame:
    """The rows of a persona dataset that are baselines (roles: ``default``; traits: ``neutral``, ``default``).

    They are the assistant answering the same questions without the persona: never
    training rows, and the natural negatives when evaluating that persona.
    """
    return frame.filter(pl.col("label").is_in(list(kind.baseline_labels)))
