"""Judge prompts and scores for steered generations: concept, instruction and fluency on 0-2.

The protocol is AxBench's (Wu et al., 2025, "AxBench: Steering LLMs? Even Simple Baselines
Outperform Sparse Autoencoders"): each generation is rated 0, 1 or 2 for how clearly it
expresses the concept (here the persona or trait), how well it follows the instruction, and
how fluent it is; a generation's score is the harmonic mean of the three, so a reply that
fails any one of them scores near 0. Our judge reads each rating from the first answer
token's logprobs (``judge/openai_judge.py``): the probability-weighted mean of the tokens 0, 1
and 2, a number in [0, 2]. "0", "1" and "2" are single tokens in every tokenizer, so no
number-scale probe is needed.

``STEERING_RATING_VERSION`` is part of every cached artifact's fingerprint: change a rating
instruction, bump the version, so cached judgments of the old wording are not reused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from steering_assets.judge.judgments import JudgeItem

STEERING_RATING_VERSION = "1"
RATING_TOP = 2  # ratings are 0, 1 or 2
CRITERIA = ("concept", "instruction", "fluency")

CONCEPT_INSTRUCTION = (
    "Rate how clearly the reply speaks as the persona described: 0 (not at all), 1 (somewhat), 2 (clearly). "
    "Answer with a single digit, or REFUSAL if you cannot answer."
)
INSTRUCTION_INSTRUCTION = (
    "Rate how well the reply answers the instruction: 0 (unrelated to it), 1 (somewhat related), 2 (answers it). "
    "Answer with a single digit, or REFUSAL if you cannot answer."
)
FLUENCY_INSTRUCTION = (
    "Rate how fluent the reply is: 0 (broken, repetitive or not language), 1 (somewhat fluent), 2 (fluent). "
    "Answer with a single digit, or REFUSAL if you cannot answer."
)
INSTRUCTIONS = {"concept": CONCEPT_INSTRUCTION, "instruction": INSTRUCTION_INSTRUCTION, "fluency": FLUENCY_INSTRUCTION}


def concept_prompt(persona: str, reply: str) -> str:
    """Does ``reply`` speak as ``persona`` (the persona's instruction or definition)?"""
    return f"{CONCEPT_INSTRUCTION}\n\nPersona: {persona}\n\nReply: {reply}"


def instruction_prompt(instruction: str, reply: str) -> str:
    """Does ``reply`` answer ``instruction``?"""
    return f"{INSTRUCTION_INSTRUCTION}\n\nInstruction: {instruction}\n\nReply: {reply}"


def fluency_prompt(reply: str) -> str:
    """Is ``reply`` fluent text?"""
    return f"{FLUENCY_INSTRUCTION}\n\nReply: {reply}"


def rating_prompts(persona: str, instruction: str, reply: str) -> dict[str, str]:
    """The three judge prompts of one generation, keyed by criterion."""
    return {"concept": concept_prompt(persona, reply), "instruction": instruction_prompt(instruction, reply),
            "fluency": fluency_prompt(reply)}


def rating_items(persona: str, instruction: str, reply: str, contrast: str = "") -> dict[str, JudgeItem]:
    """The three judge items of one generation, keyed by criterion: each criterion's rubric prompt (LLM
    judges read only that) with the parts a likelihood judge reads. ``contrast``: what the persona is told
    apart from, ``""`` for the model's default assistant."""
    prompts = rating_prompts(persona, instruction, reply)
    return {criterion: JudgeItem(prompt=prompts[criterion], criterion=criterion, answer=reply, concept=persona,
                                 contrast=contrast, question=instruction) for criterion in CRITERIA}


def harmonic_mean(values: Sequence[float]) -> float:
    """n / sum(1/x): 0 when any value is 0 (AxBench's aggregate; one failed criterion sinks the generation)."""
    if any(v < 0 for v in values):
        raise ValueError(f"ratings must be >= 0, got {list(values)}")
    if not values or any(v == 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


@dataclass(frozen=True)
class Ratings:
    """One generation's three ratings in [0, 2], or the reason it has none (an item error, never a 0)."""

    concept: float | None = None
    instruction: float | None = None
    fluency: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def harmonic(self) -> float:
        if not self.ok:
            raise ValueError(f"a generation without ratings has no score: {self.error}")
        return harmonic_mean([self.concept, self.instruction, self.fluency])


def ratings_from_judgments(judgments: dict[str, "object"]) -> Ratings:
    """Ratings from the three criteria's Judgments (0-100 scores of a 0-2 answer).

    A criterion whose judgment has no score (an error, a refusal, no digit among the top
    logprobs) makes the whole generation an item error naming it: a missing rating is not a 0.
    """
    missing = []
    values: dict[str, float] = {}
    for criterion in CRITERIA:
        judgment = judgments.get(criterion)
        if judgment is None:
            missing.append(f"{criterion}: not asked")
        elif not judgment.ok:
            why = judgment.error or ("refused" if judgment.refusal else
                                     f"no digit 0-{RATING_TOP} among the top answers (top token {judgment.top_token!r})")
            missing.append(f"{criterion}: {why}")
        else:
            values[criterion] = round(judgment.score * RATING_TOP / 100.0, 6)
    if missing:
        return Ratings(error="no rating for " + "; ".join(missing))
    return Ratings(**values)


def mean_or_nan(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
