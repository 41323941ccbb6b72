"""What every judge shares: the request (``JudgeItem``), the answer (``Judgment``), the logprob-weighted score,
and the judgment cache.

A score is the probability-weighted mean of the integer tokens among a judge's top logprobs, with no
score when their total probability is below the scoring settings' minimum; a judge that answers
``REFUSAL`` (or a prefix of it) is recorded as a refusal. Every finished judgment (a score, never an
error or an unscored answer) is cached by a hash of (judge model, prompt, scoring settings) in a
JSON-lines file that is appended and flushed per judgment, so a crash loses nothing finished and a
re-run asks only for new, changed, failed or unscored prompts. A cached score is always a finite
number in 0-100.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from steering_assets.core.errors import InputError
from steering_assets.judge.logprobs import REASONING_FIX, AnswerError, checked_logprob, number_value, starts_thinking

REFUSAL_TOKENS = ("REF", "REFUSAL", "Ref", "refusal")


NUMBER_SCALES = ("auto", "0-100", "0-9")


class JudgeConfigurationError(InputError, ValueError):
    """The judge cannot start (missing API key, bad settings, a judge that cannot be scored): raised before any work."""


class JudgeStoppedError(InputError, RuntimeError):
    """The provider refused the whole run (quota, credits, authentication): no retry helps and no item is to blame."""


@dataclass(frozen=True)
class ScoringSettings:
    max_tokens: int = 1
    temperature: float = 0.0
    top_logprobs: int = 20
    min_weight: float = 0.25
    scale_top: int = 100  # the judge answers 0..scale_top; scores are always mapped to 0-100


@dataclass(frozen=True)
class Judgment:
    score: float | None  # 0-100, finite, or None
    weight: float  # total probability of the number tokens
    refusal: bool = False
    error: str | None = None
    top_token: str | None = None

    def __post_init__(self):
        # The one place every score passes: nothing that is not a finite 0-100 number gets further.
        if self.score is not None and not (isinstance(self.score, (int, float)) and math.isfinite(self.score)
                                           and -1e-9 <= self.score <= 100 + 1e-9):
            raise ValueError(f"a judgment score must be a finite number in 0-100, got {self.score!r}")
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"a judgment weight must be a finite number >= 0, got {self.weight!r}")

    @property
    def ok(self) -> bool:
        return self.error is None and self.score is not None


CRITERIA = ("concept", "instruction", "fluency", "scenario")


@dataclass(frozen=True)
class JudgeItem:
    """One thing to judge, structured, with the rubric an LLM judge reads (``prompt``).

    LLM judges (``OpenAIJudge``, ``LocalJudge``) read ``prompt`` only, so their cache keys are
    unchanged. Judges that score the parts themselves (``judge/likelihood.py``) read the rest:

    - ``criterion``: ``"concept"`` (does ``answer`` express ``concept`` rather than ``contrast``?),
      ``"instruction"`` (does ``answer`` answer ``question``?), ``"fluency"`` (is ``answer`` fluent text?) or
      ``"scenario"`` (does the scenario ``answer`` set up the trait ``concept``, or its opposite?);
    - ``concept``: the persona or trait, as an instruction ("You are a pirate ..."), a definition, or (for
      ``"scenario"``) the trait's name;
    - ``contrast``: what the concept is told apart from: the trait's opposite instruction, or ``""`` for
      the model's default assistant (no system turn);
    - ``question``: what ``answer`` replies to (``""`` when it replies to nothing, e.g. a scenario).
    """

    prompt: str
    criterion: str
    answer: str
    concept: str = ""
    contrast: str = ""
    question: str = ""

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise ValueError(f"judge item criterion {self.criterion!r} is not one of {list(CRITERIA)}")


def prompt_text(item: "str | JudgeItem") -> str:
    """What an LLM judge reads: the item's rubric prompt, or a plain prompt string as it is."""
    return item.prompt if isinstance(item, JudgeItem) else item


def failed(message: str) -> Judgment:
    return Judgment(score=None, weight=0.0, error=message)


def weighted_score(top_logprobs: Iterable[tuple[str, float]], settings: ScoringSettings = ScoringSettings()) -> Judgment:
    """The probability-weighted mean of the integer tokens 0..``scale_top`` among ``(token, logprob)`` pairs, on 0-100.

    Token text is read with ``number_value`` (surrounding spaces, full-width and other scripts'
    digits); a logprob that is NaN, null, positive or not a number makes the judgment an error.
    """
    pairs = list(top_logprobs)
    total, weighted = 0.0, 0.0
    for index, (token, logprob) in enumerate(pairs):
        try:
            logprob = checked_logprob(logprob, f"top_logprobs[{index}] ({token!r})")
        except AnswerError as err:
            return failed(str(err))
        value = number_value(token)
        if value is not None and value <= settings.scale_top:
            probability = math.exp(logprob)
            total += probability
            weighted += probability * value
    top = max(pairs, key=lambda pair: pair[1])[0] if pairs else None
    if starts_thinking(top):  # a local reasoning model, the same as an answer read from a server
        return failed(REASONING_FIX)
    refusal = bool(top) and top.strip() in REFUSAL_TOKENS
    if total < settings.min_weight or total == 0.0:
        return Judgment(score=None, weight=total, refusal=refusal, top_token=top)
    score = min(100.0, max(0.0, weighted / total * 100.0 / settings.scale_top))
    return Judgment(score=score, weight=total, refusal=False, top_token=top)


def cache_key(judge_model: str, prompt: str, settings: ScoringSettings) -> str:
    payload = json.dumps({"model": judge_model, "prompt": prompt, "settings": asdict(settings)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class JudgmentCache:
    """Append-only JSON-lines cache of finished judgments and of the judge's setup probe.

    Only judgments with a score are kept: errors and unscored answers are asked again next
    time. Lines written by older versions that hold no score, or a score that is not a finite
    0-100 number, are ignored on load and counted in ``dropped``.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._entries: dict[str, Judgment] = {}
        self._probes: dict[str, dict] = {}
        self.dropped = 0
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        row = json.loads(line)
                        if "probe" in row:
                            self._probes[row["key"]] = dict(row["probe"])
                            continue
                        judgment = Judgment(**row["judgment"])
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        # A line cut short by a crash, or one holding NaN: that judgment is simply redone.
                        self.dropped += 1
                        continue
                    if judgment.ok:
                        self._entries[row["key"]] = judgment
                    else:
                        self.dropped += 1

    def get(self, key: str) -> Judgment | None:
        return self._entries.get(key)

    def put(self, key: str, judgment: Judgment) -> None:
        if not judgment.ok:
            return
        self._entries[key] = judgment
        self._append({"key": key, "judgment": asdict(judgment)})

    def get_probe(self, key: str) -> dict | None:
        return self._probes.get(key)

    def put_probe(self, key: str, probe: dict) -> None:
        self._probes[key] = probe
        self._append({"key": key, "probe": probe})

    def _append(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written through to the OS per judgment: a killed process loses nothing it finished.
        # (No fsync per line: on 200 judgments it would cost more than the calls themselves.)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, allow_nan=False) + "\n")

    def __len__(self) -> int:
        return len(self._entries)
