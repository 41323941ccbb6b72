"""The demo's contrastive scenarios, with verdicts known by construction.

A demo scenario is a trait cue followed by a question, e.g. "Be funny: answer with jokes, puns
and playful wit. Why is my computer so slow?". A good pair sets up the trait in its positive line
and the opposite in its negative line. Three pairs per trait hold one deliberately weak line: a
positive line with no cue, a positive line cued for the opposite, a negative line cued for the
other demo trait. Each line's expected verdict goes to the trait's ``verdicts.jsonl`` in the
format users write (what the judge calibration reads), so ``make demo`` can say how often the
judge agrees with the construction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from demo.instructions import DEMO_TRAITS
from steering_assets.core.artifacts import atomic_path

CATEGORY = "personality"
# Short and worded apart from the cues, so the judge has to relate the two.
DEFINITIONS = {
    "optimistic": "Optimistic: hopeful and confident about the future, expecting good things to happen.",
    "humorous": "Humorous: wants to amuse, sees the comic side of things and enjoys wit.",
}
# Pair index -> the weak line it holds.
WEAK_LINES = {2: "positive: no cue", 5: "positive: cues the opposite", 8: "negative: cues the other trait"}


@dataclass(frozen=True)
class DemoItem:
    text: str
    should_pass: bool
    why: str


def demo_trait_scenarios(trait: str) -> tuple[list[DemoItem], list[DemoItem]]:
    """Paired positive/negative scenarios for one demo trait, one pair per question."""
    pos_cue, neg_cue = DEMO_TRAITS[trait]["pairs"][0]
    other = next(t for t in DEMO_TRAITS if t != trait)
    other_cue = DEMO_TRAITS[other]["pairs"][0][0]
    positive, negative = [], []
    for index, question in enumerate(DEMO_TRAITS[trait]["questions"]):
        pos = DemoItem(f"{pos_cue} {question}", True, "sets up the trait")
        neg = DemoItem(f"{neg_cue} {question}", True, "sets up the opposite")
        weak = WEAK_LINES.get(index)
        if weak == "positive: no cue":
            pos = DemoItem(question, False, "weak: no cue for the trait")
        elif weak == "positive: cues the opposite":
            pos = DemoItem(f"{neg_cue} {question}", False, "weak: cues the opposite")
        elif weak == "negative: cues the other trait":
            neg = DemoItem(f"{other_cue} {question}", False, f"weak: cues {other}, not the opposite")
        positive.append(pos)
        negative.append(neg)
    return positive, negative


def write_demo_scenarios(scenarios_root: Path) -> list[Path]:
    """Write ``{root}/personality/{trait}/{positive,negative,definition}.txt`` and ``verdicts.jsonl``; returns the folders."""
    folders = []
    for trait in DEMO_TRAITS:
        positive, negative = demo_trait_scenarios(trait)
        folder = Path(scenarios_root) / CATEGORY / trait
        folder.mkdir(parents=True, exist_ok=True)
        verdicts = "".join(json.dumps({"polarity": side, "idx": index, "should_pass": item.should_pass, "prompt": item.text,
                                       "why": item.why}) + "\n"
                           for side, items in (("positive", positive), ("negative", negative))
                           for index, item in enumerate(items))
        for name, text in (("definition.txt", DEFINITIONS[trait] + "\n"),
                           ("positive.txt", "".join(item.text + "\n" for item in positive)),
                           ("negative.txt", "".join(item.text + "\n" for item in negative)),
                           ("verdicts.jsonl", verdicts)):
            path = folder / name
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                continue  # unchanged: the scenario sensor and the fingerprints see nothing new
            with atomic_path(path) as tmp:
                tmp.write_text(text, encoding="utf-8")
        folders.append(folder)
    return folders


def expected_verdicts(scenarios_root: Path, key: str) -> dict[str, list[dict]]:
    """The construction's verdicts of one trait (``category/trait``), per side, read back from its verdicts.jsonl."""
    sides: dict[str, list[dict]] = {"positive": [], "negative": []}
    path = Path(scenarios_root) / key / "verdicts.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            sides[row["polarity"]].append(row)
    return sides
