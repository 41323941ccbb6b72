"""Join rollouts with judge scores into the processed persona-dataset schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from steering_assets.personas.layout import PersonaRef
from steering_assets.personas.loading import REFUSAL, read_responses, read_scores

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
    }


@dataclass
class JoinReport:
    """How rollouts and scores matched up; mismatches are reported, not fatal."""

    responses: int = 0
    scored: int = 0
    refusals: int = 0
    responses_without_score: int = 0
    scores_without_response: int = 0
    orphan_score_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int | list[str]]:
        return dict(self.__dict__)


def build_persona_dataset(ref: PersonaRef, data_root: Path | str) -> tuple[pl.DataFrame, JoinReport]:
    """Read one persona's rollouts (and scores, unless it is a baseline) into the processed schema."""
    responses = read_responses(ref.responses_path(data_root), ref.kind)
    scores = {} if ref.is_baseline else read_scores(ref.scores_path(data_root), ref.kind)
    report = JoinReport(responses=len(responses))
    rows = []
    for response in responses:
        score = scores.get(response.score_key)
        if score is None:
            status, value = SCORE_MISSING, None
            report.responses_without_score += 1
        elif score == REFUSAL:
            status, value = SCORE_REFUSAL, None
            report.refusals += 1
        else:
            status, value = SCORE_SCORED, score
            report.scored += 1
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
                # The system turn is the persona instruction; training data is the
                # conversation the model should produce without it.
                "messages": [t for t in response.conversation if t["role"] != "system"],
                "extract_score": value,
                "score_status": status,
            }
        )
    if not ref.is_baseline:
        response_keys = {r.score_key for r in responses}
        orphans = sorted(k for k in scores if k not in response_keys)
        report.scores_without_response = len(orphans)
        report.orphan_score_examples = orphans[:10]
    frame = pl.DataFrame(rows, schema=dataset_schema(ref.kind.column))
    return frame, report
