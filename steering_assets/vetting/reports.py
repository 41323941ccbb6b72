"""Vetting verdicts from judge scores: pass thresholds per polarity and the response-score report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from steering_assets.formats.scenarios import TraitScenarios
from steering_assets.judge.judgments import Judgment


@dataclass(frozen=True)
class Thresholds:
    pos_threshold: float = 60.0  # a positive item passes at score >= this
    neg_threshold: float = 40.0  # a negative item passes at score <= this

    def requirement(self, polarity: str) -> str:
        return f">= {self.pos_threshold:g}" if polarity == "positive" else f"<= {self.neg_threshold:g}"


def passes(judgment: Judgment, polarity: str, thresholds: Thresholds) -> bool:
    """Errors and unscored answers fail; so does a score on the wrong side of its threshold."""
    if not judgment.ok:
        return False
    if polarity == "positive":
        return judgment.score >= thresholds.pos_threshold
    return judgment.score <= thresholds.neg_threshold


def response_scores_report(
    experiment: str, scenarios: TraitScenarios, judgments: Sequence[tuple[int, str, Judgment]], thresholds: Thresholds,
    *, with_text: bool = False,
) -> dict:
    """The vetting document: thresholds, summary, failed indices per polarity and every result.

    Stage 2's ``response_scores.json`` has the shape docs/vetting.md gives (results ``{idx, polarity, score}``,
    plus ``error`` or ``refusal`` when present). With ``with_text`` (stage 0's
    ``scenario_scores.json``, as trait-interp writes it) each result also holds the item's text
    (``scenario``, and ``system_prompt`` when it has one) and the summary its ``total``.
    Errors and unscored answers count as failures.
    """
    summary = {"positive_passed": 0, "negative_passed": 0, "positive_failed": 0, "negative_failed": 0, "errors": 0}
    failed: dict[str, list[int]] = {"positive": [], "negative": []}
    results = []
    for index, polarity, judgment in judgments:
        ok = passes(judgment, polarity, thresholds)
        summary[f"{polarity}_{'passed' if ok else 'failed'}"] += 1
        if judgment.error is not None:
            summary["errors"] += 1
        if not ok:
            failed[polarity].append(index)
        result: dict = {"idx": index, "polarity": polarity}
        if with_text:
            item = scenarios.side(polarity)[index]
            result["scenario"] = item.prompt
            if item.system_prompt:
                result["system_prompt"] = item.system_prompt
        result["score"] = judgment.score
        if judgment.error is not None:
            result["error"] = judgment.error
        if judgment.refusal:
            result["refusal"] = True
        results.append(result)
    if with_text:
        summary = {"total": len(results), **summary}
    return {
        "experiment": experiment,
        "trait": scenarios.trait,
        "trait_definition": scenarios.definition,
        "thresholds": {"pos_threshold": thresholds.pos_threshold, "neg_threshold": thresholds.neg_threshold},
        "summary": summary,
        "failed_indices": failed,
        "results": results,
    }


def report_is_complete(report: dict) -> bool:
    """True when every item has a score: a report with errors or unscored items is never reused as up to date."""
    return all(r.get("score") is not None and "error" not in r for r in report.get("results", []))
