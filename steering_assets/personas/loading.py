"""Reading raw rollouts and judge scores, with errors that point at the offending line or key."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering_assets.jsonl import iter_json_objects
from steering_assets.personas.layout import PersonaKind

REFUSAL = "REFUSAL"
_SCORE_KEY = re.compile(r"^(?P<label>[A-Za-z]+)_p(?P<prompt>\d+)_q(?P<question>\d+)$")


class RolloutFormatError(ValueError):
    """Raw rollout or score data that does not match the persona-subspace format."""


@dataclass(frozen=True)
class Response:
    system_prompt: str
    label: str
    prompt_index: int
    question_index: int
    question: str
    conversation: list[dict[str, str]]

    @property
    def score_key(self) -> str:
        return score_key(self.label, self.prompt_index, self.question_index)


def score_key(label: str, prompt_index: int, question_index: int) -> str:
    return f"{label}_p{prompt_index}_q{question_index}"


def _field(obj: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise RolloutFormatError(f"{where}: missing field {key!r}")
    value = obj[key]
    # bool is an int subclass; an index of `true` is a data error, not 1.
    if not isinstance(value, types) or isinstance(value, bool):
        expected = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise RolloutFormatError(f"{where}: field {key!r} should be {expected}, got {type(value).__name__}")
    return value


def _parse_conversation(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise RolloutFormatError(f"{where}: field 'conversation' should be a non-empty list of turns")
    turns = []
    for i, turn in enumerate(value):
        if (
            not isinstance(turn, dict)
            or not isinstance(turn.get("role"), str)
            or not isinstance(turn.get("content"), str)
        ):
            raise RolloutFormatError(
                f"{where}: conversation turn {i} should be an object with string 'role' and 'content'"
            )
        turns.append({"role": turn["role"], "content": turn["content"]})
    return turns


def read_responses(path: Path | str, kind: PersonaKind) -> list[Response]:
    """Parse one responses JSONL file; every problem names the file and 1-based line number."""
    path = Path(path)
    responses: list[Response] = []
    seen: dict[str, int] = {}
    for where, line_number, obj in iter_json_objects(path, RolloutFormatError):
        label = _field(obj, "label", str, where)
        if label not in kind.labels:
            raise RolloutFormatError(f"{where}: label {label!r} is not one of {list(kind.labels)} for {kind.name}")
        response = Response(
            system_prompt=_field(obj, "system_prompt", str, where),
            label=label,
            prompt_index=_field(obj, "prompt_index", int, where),
            question_index=_field(obj, "question_index", int, where),
            question=_field(obj, "question", str, where),
            conversation=_parse_conversation(obj.get("conversation"), where),
        )
        if response.score_key in seen:
            raise RolloutFormatError(
                f"{where}: duplicate response {response.score_key!r} (first seen on line {seen[response.score_key]})"
            )
        seen[response.score_key] = line_number
        responses.append(response)
    if not responses:
        raise RolloutFormatError(f"{path}: responses file is empty; expected one JSON object per line")
    return responses


def read_scores(path: Path | str, kind: PersonaKind) -> dict[str, int | str]:
    """Parse one flat score file ``{"{label}_p{i}_q{j}": score}`` and check every value's range."""
    path = Path(path)
    if not path.is_file():
        raise RolloutFormatError(
            f"{path}: score file is missing; every non-baseline {kind.column} needs its judge scores "
            f"in {kind.directory}/extract_scores/<name>.json"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RolloutFormatError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    if not isinstance(raw, dict):
        raise RolloutFormatError(f"{path}: expected one JSON object mapping score keys to scores")
    scores: dict[str, int | str] = {}
    for key, value in raw.items():
        match = _SCORE_KEY.match(key)
        if not match:
            raise RolloutFormatError(f"{path}: key {key!r} is not of the form '<label>_p<prompt>_q<question>'")
        if value == REFUSAL and kind.allows_refusal:
            scores[key] = REFUSAL
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            allowed = f"an integer {kind.min_score}-{kind.max_score}" + (' or "REFUSAL"' if kind.allows_refusal else "")
            raise RolloutFormatError(f"{path}: key {key!r} has score {value!r}; expected {allowed}")
        if not kind.min_score <= value <= kind.max_score:
            raise RolloutFormatError(
                f"{path}: key {key!r} has score {value}, outside the {kind.column} range "
                f"{kind.min_score}-{kind.max_score}"
            )
        scores[key] = value
    return scores
