"""Judge calibration, per judge, trait and stage: how far a vetting result can be trusted.

- **Agreement** with known verdicts (``verdicts.jsonl`` beside the scenarios, see
  ``scenarios.read_verdicts``): the share of items with a known verdict and a score whose
  pass/fail equals it. Items without a score are left out (an error is not a verdict).
- **Ambiguous share**: the share of scored items whose score lies strictly between the
  negative and the positive threshold (40 < score < 60 by default), where the judge commits
  to neither side and a small change of prompt or model flips the outcome.
- **Drift**: the change of score since the previous vetting of the same items, matched by
  the SHA-256 of the exact prompt the judge saw (definition, item, scale): mean and largest
  absolute change in points, and how many items changed pass/fail. Cached judgments are
  reused, so drift shows when the judge behind a name changed (a retrained local judge, a
  re-run after the cache was cleared, a new model), not sampling noise.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from steering_assets.formats.scenarios import Verdict
from steering_assets.vetting.reports import Thresholds

CALIBRATION_FILE = "calibration.json"
CALIBRATION_PLOT = "calibration.png"


def prompt_digest(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def verdicts_digest(verdicts: Sequence[Verdict]) -> str:
    payload = json.dumps([[v.stage, v.polarity, v.idx, v.should_pass] for v in verdicts], sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def item_scores(report: dict, prompts: dict[tuple[str, int], str]) -> list[dict]:
    """Each result's score and pass/fail keyed by the digest of the prompt the judge saw."""
    failed = {(p, i) for p in ("positive", "negative") for i in report["failed_indices"][p]}
    return [{"polarity": r["polarity"], "idx": r["idx"], "prompt_sha256": prompt_digest(prompts[(r["polarity"], r["idx"])]),
             "score": r["score"], "passed": (r["polarity"], r["idx"]) not in failed}
            for r in report["results"]]


def drift(items: Sequence[dict], previous: dict | None) -> dict:
    """Score change of the items also in ``previous`` (a calibration document), with both scores present."""
    if previous is None:
        return {"previous": None, "compared": 0, "mean_abs_change": None, "max_abs_change": None, "flipped": 0}
    before = {row["prompt_sha256"]: row for row in previous.get("items", []) if row.get("score") is not None}
    changes, flipped = [], 0
    for row in items:
        old = before.get(row["prompt_sha256"])
        if old is None or row["score"] is None:
            continue
        changes.append(abs(row["score"] - old["score"]))
        flipped += bool(row["passed"]) != bool(old["passed"])
    return {
        "previous": {"judge": previous.get("judge"), "vetted_at": previous.get("vetted_at")},
        "compared": len(changes),
        "mean_abs_change": sum(changes) / len(changes) if changes else None,
        "max_abs_change": max(changes) if changes else None,
        "flipped": flipped,
    }


def stored_calibration(judge: str, stage: str, vetted_at: str, items: Sequence[dict], previous: dict | None) -> dict:
    """The ``calibration.json`` written with a vetting: its items, each with the previous vetting's score, and the drift."""
    before = {row["prompt_sha256"]: row.get("score") for row in (previous or {}).get("items", [])}
    return {"judge": judge, "stage": stage, "vetted_at": vetted_at, "drift": drift(items, previous),
            "items": [{**row, "previous_score": before.get(row["prompt_sha256"])} for row in items]}


def agreement(report: dict, verdicts: Sequence[Verdict]) -> dict:
    scores = {(r["polarity"], r["idx"]): r["score"] for r in report["results"]}
    failed = {(p, i) for p in ("positive", "negative") for i in report["failed_indices"][p]}
    compared, agree, misses = 0, 0, []
    for verdict in verdicts:
        score = scores.get((verdict.polarity, verdict.idx))
        if score is None:
            continue
        judged_pass = (verdict.polarity, verdict.idx) not in failed
        compared += 1
        if judged_pass == verdict.should_pass:
            agree += 1
        else:
            misses.append({"polarity": verdict.polarity, "idx": verdict.idx, "score": score,
                           "expected": "pass" if verdict.should_pass else "fail", "why": verdict.why})
    return {"known": len(verdicts), "compared": compared, "agree": agree,
            "rate": agree / compared if compared else None, "misses": misses}


def ambiguity(report: dict, thresholds: Thresholds) -> dict:
    scored = [r["score"] for r in report["results"] if r["score"] is not None]
    inside = [s for s in scored if thresholds.neg_threshold < s < thresholds.pos_threshold]
    return {"band": [thresholds.neg_threshold, thresholds.pos_threshold], "scored": len(scored), "count": len(inside),
            "share": len(inside) / len(scored) if scored else None}


def calibrate(judge: str, stage: str, report: dict, verdicts: Sequence[Verdict], thresholds: Thresholds,
              stored: dict | None) -> dict:
    """Agreement and ambiguity of ``report`` now, with the drift ``stored`` when the report was written."""
    return {"judge": judge, "stage": stage, "agreement": agreement(report, [v for v in verdicts if v.stage == stage]),
            "ambiguous": ambiguity(report, thresholds), "drift": (stored or {}).get("drift") or drift([], None)}


def read_calibration(folder: Path) -> dict | None:
    path = Path(folder) / CALIBRATION_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def calibration_warnings(calibration: dict, min_agreement: float, max_drift: float) -> list[str]:
    """Why the calibration check WARNs (empty when it passes)."""
    reasons = []
    rate = calibration["agreement"]["rate"]
    if rate is not None and rate < min_agreement:
        reasons.append(f"agreement with known verdicts {rate:.0%} is under the bar {min_agreement:.0%}")
    change = calibration["drift"]["mean_abs_change"]
    if change is not None and change > max_drift:
        reasons.append(f"scores moved {change:.1f} points on average since the previous vetting (bar {max_drift:g})")
    return reasons


def calibration_row(calibration: dict) -> dict[str, str]:
    """One human-readable row: agreement, ambiguous share, drift."""
    agree, amb, moved = calibration["agreement"], calibration["ambiguous"], calibration["drift"]
    return {
        "agreement": f"{agree['agree']}/{agree['compared']} ({agree['rate']:.0%})" if agree["compared"] else "no known verdicts",
        "ambiguous": f"{amb['count']}/{amb['scored']} ({amb['share']:.0%})" if amb["scored"] else "-",
        "drift": (f"{moved['mean_abs_change']:.1f} mean, {moved['max_abs_change']:.1f} max, {moved['flipped']} flipped "
                  f"({moved['compared']} items)" if moved["compared"] else
                  "first vetting" if moved["previous"] is None else "no items in common"),
    }


def calibration_plot(report: dict, calibration: dict, verdicts: Sequence[Verdict], stored: dict | None,
                     thresholds: Thresholds, title: str) -> bytes:
    """Every item's score (positives then negatives), the ambiguous band shaded, colored by agreement with known
    verdicts; the previous vetting's score of the same item as a hollow marker."""
    from steering_assets.core.plots import line_plot_png

    known = {(v.polarity, v.idx): v.should_pass for v in verdicts if v.stage == calibration["stage"]}
    failed = {(p, i) for p in ("positive", "negative") for i in report["failed_indices"][p]}
    previous = {(row["polarity"], row["idx"]): row["previous_score"] for row in (stored or {}).get("items", [])
                if row.get("previous_score") is not None}
    results = sorted(report["results"], key=lambda r: (r["polarity"] != "positive", r["idx"]))

    def draw(axis: Any) -> None:
        axis.axhspan(thresholds.neg_threshold, thresholds.pos_threshold, color="0.9", label="ambiguous band")
        groups: dict[str, tuple[list, list, str]] = {"agrees with verdict": ([], [], "tab:green"),
                                                     "disagrees": ([], [], "tab:red"), "no verdict": ([], [], "0.4")}
        was_x, was_y = [], []
        for x, r in enumerate(results):
            key = (r["polarity"], r["idx"])
            if r["score"] is None:
                continue
            name = "no verdict" if key not in known else (
                "agrees with verdict" if (key not in failed) == known[key] else "disagrees")
            groups[name][0].append(x)
            groups[name][1].append(r["score"])
            if key in previous:
                was_x.append(x)
                was_y.append(previous[key])
        for name, (xs, ys, color) in groups.items():
            if xs:
                axis.scatter(xs, ys, s=14, color=color, label=name, zorder=3)
        if was_x:
            axis.scatter(was_x, was_y, s=22, facecolors="none", edgecolors="tab:blue", label="previous vetting", zorder=2)
        positives = sum(r["polarity"] == "positive" for r in results)
        axis.axvline(positives - 0.5, color="0.6", linewidth=0.8)
        axis.set_ylim(-3, 103)

    return line_plot_png(draw, "item (positives, then negatives)", "judge score", title)
