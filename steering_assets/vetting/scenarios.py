"""Contrastive trait scenarios on disk and the vetting report.

    {scenarios_root}/{category}/{trait}/positive.txt    one scenario a line
    {scenarios_root}/{category}/{trait}/negative.txt
    {scenarios_root}/{category}/{trait}/definition.txt

Positive and negative files are paired line by line (scenario i of each tells the same
situation with and without the trait), so they must have the same length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from steering_assets.personas.layout import validate_name
from steering_assets.vetting.judge import Judgment


class ScenarioFormatError(ValueError):
    """Scenario files that cannot be vetted as they are."""


@dataclass(frozen=True)
class TraitScenarios:
    category: str
    trait: str
    definition: str
    positive: list[str]
    negative: list[str]

    @property
    def partition_key(self) -> str:
        return f"{self.category}/{self.trait}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ScenarioFormatError(f"{path}:{line}: not UTF-8 (byte {err.object[err.start]:#x}); re-save the file as UTF-8") from None


def read_trait_scenarios(folder: Path | str) -> TraitScenarios:
    folder = Path(folder)
    trait = validate_name(folder.name, "trait name")
    category = validate_name(folder.parent.name, "scenario category")
    definition_path = folder / "definition.txt"
    if not definition_path.is_file():
        raise ScenarioFormatError(f"{definition_path}: missing; the judge needs the trait's definition to score anything")
    definition = _read_text(definition_path).strip()
    if not definition:
        raise ScenarioFormatError(f"{definition_path}: empty; write one paragraph defining the trait")
    sides = {}
    for side in ("positive", "negative"):
        path = folder / f"{side}.txt"
        if not path.is_file():
            raise ScenarioFormatError(f"{path}: missing; expected one scenario a line")
        lines = [line.strip() for line in _read_text(path).splitlines() if line.strip()]
        if not lines:
            raise ScenarioFormatError(f"{path}: no scenarios; expected one scenario a line")
        sides[side] = lines
    if len(sides["positive"]) != len(sides["negative"]):
        raise ScenarioFormatError(
            f"{folder}: positive.txt has {len(sides['positive'])} scenarios and negative.txt {len(sides['negative'])}; "
            "they are paired line by line, so add or remove lines until both match"
        )
    return TraitScenarios(category, trait, definition, sides["positive"], sides["negative"])


def discover_traits(root: Path | str) -> list[Path]:
    """Every ``{category}/{trait}`` folder holding a definition.txt (a new folder is a new partition)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"scenario folder {root} does not exist; set PERSONA_SCENARIOS_ROOT")
    return sorted(path.parent for path in root.glob("*/*/definition.txt"))


@dataclass(frozen=True)
class Thresholds:
    pos_threshold: float = 60.0  # a positive item passes at score >= this
    neg_threshold: float = 40.0  # a negative item passes at score <= this


def passes(judgment: Judgment, polarity: str, thresholds: Thresholds) -> bool:
    """Errors and unscored answers fail; so does a score on the wrong side of its threshold."""
    if not judgment.ok:
        return False
    if polarity == "positive":
        return judgment.score >= thresholds.pos_threshold
    return judgment.score <= thresholds.neg_threshold


def response_scores_report(
    experiment: str, scenarios: TraitScenarios, judgments: Sequence[tuple[int, str, Judgment]], thresholds: Thresholds
) -> dict:
    """The ``response_scores.json`` document: thresholds, summary, failed indices and every result."""
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
        result = {"idx": index, "polarity": polarity, "score": judgment.score}
        if judgment.error is not None:
            result["error"] = judgment.error
        if judgment.refusal:
            result["refusal"] = True
        results.append(result)
    return {
        "experiment": experiment,
        "trait": scenarios.trait,
        "trait_definition": scenarios.definition,
        "thresholds": {"pos_threshold": thresholds.pos_threshold, "neg_threshold": thresholds.neg_threshold},
        "summary": summary,
        "failed_indices": failed,
        "results": results,
    }
