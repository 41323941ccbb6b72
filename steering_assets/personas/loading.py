"""Reading raw rollouts and judge scores, with errors that point at the offending line or key.

Every label, key shape and field variant the public writers produce is read here:

- response lines of persona-subspace ``roles/2_responses.py`` and ``traits/2_responses.py``
  and of assistant-axis ``pipeline/1_generate.py``: ``system_prompt, label, prompt_index,
  question_index, question, conversation``;
- older lines without ``prompt_index`` (read as prompt 0, as the writers' own readers do
  with ``r.get('prompt_index', 0)``), or with ``pair_index``, its name before
  ``traits/rename_field.py``; lines without ``question`` take it from the user turn;
- score keys ``{label}_p{i}_q{j}``; ``neutral_...`` keys are the trait judge's ``default_...``
  (its ``convert_old_scores_format`` renames them); older ``{label}_{j}`` keys are prompt 0
  (the same converter's rule); assistant-axis ``scripts/3_judge.py`` keys ``q{j}_p{i}``
  carry no label and are read as ``pos`` (that generator labels every row ``pos``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering_assets.core.jsonl import iter_json_objects
from steering_assets.formats.rollouts import PersonaKind, RolloutFormatError

__all__ = [
    "REFUSAL", "RolloutFormatError", "Response", "ScoreReport", "read_responses", "read_scores",
    "read_scores_with_report", "score_key", "training_turns",
]

REFUSAL = "REFUSAL"
_SCORE_KEY = re.compile(r"^(?P<label>[A-Za-z]+)_p(?P<prompt>\d+)_q(?P<question>\d+)$")
_OLD_LABEL_QUESTION = re.compile(r"^(?P<label>[A-Za-z]+)_(?P<question>\d+)$")
_OLD_QUESTION_PROMPT = re.compile(r"^q(?P<question>\d+)_p(?P<prompt>\d+)$")

KEY_CURRENT = "label_p_q"
KEY_LABEL_QUESTION = "label_q"  # {label}_{question}: persona-subspace judges before prompt indices
KEY_QUESTION_PROMPT = "q_p"  # q{question}_p{prompt}: assistant-axis scripts/3_judge.py

PROMPT_INDEX_FIELD = "field"
PROMPT_INDEX_PAIR = "pair_index"
PROMPT_INDEX_ASSUMED = "assumed_0"


@dataclass(frozen=True)
class Response:
    system_prompt: str
    label: str
    prompt_index: int
    question_index: int
    question: str
    conversation: list[dict[str, str]]
    score_label: str  # the label of this row's score key ("default" for a trait's "neutral" row)
    line: int = 0
    prompt_index_source: str = PROMPT_INDEX_FIELD
    question_from_user_turn: bool = False

    @property
    def score_key(self) -> str:
        return score_key(self.score_label, self.prompt_index, self.question_index)


def score_key(label: str, prompt_index: int, question_index: int) -> str:
    return f"{label}_p{prompt_index}_q{question_index}"


def training_turns(conversation: list[dict[str, str]], system_prompt: str) -> tuple[list[dict[str, str]], bool]:
    """The conversation the model should produce without its persona instruction.

    System turns are dropped. A model without a system role (Gemma-2) gets no system turn:
    the writers put the instruction at the start of the user turn as
    ``f"{instruction}\\n\\n{question}"`` (persona-subspace's trait writer always does, for
    every model). When there is no system turn and the first user turn starts with
    ``system_prompt + "\\n\\n"``, that prefix is removed; an empty instruction leaves
    ``"\\n\\n{question}"`` and is removed too. Returns the turns and whether a prefix was removed.
    """
    has_system = any(turn["role"] == "system" for turn in conversation)
    turns = [dict(turn) for turn in conversation if turn["role"] != "system"]
    if has_system:
        return turns, False
    prefix = system_prompt + "\n\n"
    for turn in turns:
        if turn["role"] == "user":
            if turn["content"].startswith(prefix):
                turn["content"] = turn["content"][len(prefix):]
                return turns, True
            break
    return turns, False


def _field(obj: dict[str, Any], key: str, types: type | tuple[type, ...], where: str, hint: str = "") -> Any:
    if key not in obj:
        raise RolloutFormatError(f"{where}: missing field {key!r}{hint}")
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


def _label(obj: dict[str, Any], kind: PersonaKind, where: str) -> str:
    label = _field(obj, "label", str, where)
    if label not in kind.labels:
        raise RolloutFormatError(
            f"{where}: label {label!r} is not one of {list(kind.labels)}, the labels the {kind.column} writers emit "
            f"({', '.join(kind.baseline_labels)} rows are baselines)"
        )
    return label


def _prompt_index(obj: dict[str, Any], where: str) -> tuple[int, str]:
    if "prompt_index" in obj:
        return _field(obj, "prompt_index", int, where), PROMPT_INDEX_FIELD
    if "pair_index" in obj:
        # The trait writer's name for prompt_index before traits/rename_field.py.
        return _field(obj, "pair_index", int, where), PROMPT_INDEX_PAIR
    # Lines written before prompt indices existed used the first prompt only; the
    # writers' own readers take r.get('prompt_index', 0).
    return 0, PROMPT_INDEX_ASSUMED


def read_responses(path: Path | str, kind: PersonaKind) -> list[Response]:
    """Parse one responses JSONL file; every problem names the file and 1-based line number.

    Raises RolloutFormatError for a malformed line, a missing or mistyped field, a label the
    writers do not emit, a line without ``question`` whose conversation has no user turn,
    and two lines with the same score key.
    """
    path = Path(path)
    responses: list[Response] = []
    seen: dict[str, tuple[int, str]] = {}
    for where, line_number, obj in iter_json_objects(path, RolloutFormatError):
        label = _label(obj, kind, where)
        system_prompt = _field(obj, "system_prompt", str, where)
        prompt_index, prompt_source = _prompt_index(obj, where)
        question_index = _field(
            obj, "question_index", int, where,
            " (every writer records it; add the question's position in the questions file to each line)",
        )
        conversation = _parse_conversation(obj.get("conversation"), where)
        question_from_turn = "question" not in obj
        if question_from_turn:
            turns, _ = training_turns(conversation, system_prompt)
            user = next((t["content"] for t in turns if t["role"] == "user"), None)
            if user is None:
                raise RolloutFormatError(
                    f"{where}: missing field 'question' and the conversation has no user turn to take it from; "
                    "add the question text as 'question' to each line"
                )
            question = user
        else:
            question = _field(obj, "question", str, where)
        response = Response(
            system_prompt=system_prompt,
            label=label,
            prompt_index=prompt_index,
            question_index=question_index,
            question=question,
            conversation=conversation,
            score_label=kind.score_label(label),
            line=line_number,
            prompt_index_source=prompt_source,
            question_from_user_turn=question_from_turn,
        )
        if response.score_key in seen:
            first_line, first_label = seen[response.score_key]
            why = ""
            if prompt_source == PROMPT_INDEX_ASSUMED:
                why = (" (this line has no prompt_index, so it is read as prompt 0, as the writers' own readers do; "
                       "add 'prompt_index' to every line of a file that holds several prompts)")
            elif first_label != label:
                neutral = first_label if first_label != response.score_label else label
                why = (f" ({neutral!r} rows are scored under {response.score_label!r}, so a {first_label!r} row and a "
                       f"{label!r} row of one prompt and question would share one score; keep one of them)")
            raise RolloutFormatError(
                f"{where}: duplicate response {response.score_key!r} (first seen on line {first_line}){why}"
            )
        seen[response.score_key] = (line_number, label)
        responses.append(response)
    if not responses:
        raise RolloutFormatError(f"{path}: responses file is empty; expected one JSON object per line")
    return responses


@dataclass
class ScoreReport:
    """Which key shapes a score file used; older shapes are converted to ``{label}_p{i}_q{j}``."""

    keys: int = 0
    shapes: Counter | None = None

    def __post_init__(self) -> None:
        self.shapes = self.shapes or Counter()

    @property
    def converted(self) -> int:
        return sum(n for shape, n in self.shapes.items() if shape != KEY_CURRENT)


def _canonical_key(key: str, kind: PersonaKind, path: Path) -> tuple[str, str]:
    allowed = f"'<label>_p<prompt>_q<question>' with a label in {list(kind.key_labels)}"
    match = _SCORE_KEY.match(key)
    shape = KEY_CURRENT
    if match:
        label, prompt, question = match["label"], match["prompt"], match["question"]
    elif (match := _OLD_LABEL_QUESTION.match(key)):
        # {label}_{question}: the judges' convert_old_scores_format reads it as prompt 0.
        label, prompt, question, shape = match["label"], "0", match["question"], KEY_LABEL_QUESTION
    elif (match := _OLD_QUESTION_PROMPT.match(key)):
        if "pos" not in kind.labels or kind.name != "roles":
            raise RolloutFormatError(
                f"{path}: key {key!r} has the label-less shape 'q<question>_p<prompt>' of assistant-axis "
                f"scripts/3_judge.py, which scores roles only; {kind.column} keys are {allowed}"
            )
        label, prompt, question, shape = "pos", match["prompt"], match["question"], KEY_QUESTION_PROMPT
    else:
        raise RolloutFormatError(
            f"{path}: key {key!r} is not of the form '<label>_p<prompt>_q<question>' "
            "(older files: '<label>_<question>', or 'q<question>_p<prompt>' from assistant-axis scripts/3_judge.py)"
        )
    if label not in kind.labels:
        raise RolloutFormatError(f"{path}: key {key!r} has label {label!r}; {kind.column} score keys are {allowed}")
    return score_key(kind.score_label(label), int(prompt), int(question)), shape


def read_scores_with_report(path: Path | str, kind: PersonaKind) -> tuple[dict[str, int | str], ScoreReport]:
    """Parse one flat score file ``{"{label}_p{i}_q{j}": score}`` and check every value's range.

    Older key shapes are converted (see the module docstring) and counted in the report;
    two keys that convert to the same key with different scores are an error.
    """
    path = Path(path)
    if not path.is_file():
        raise RolloutFormatError(
            f"{path}: score file is missing; every non-baseline {kind.column} needs its judge scores "
            f"beside its responses ({kind.directory}/extract_scores/<name>.json or {kind.directory}/extract_labels/"
            "<name>.json, or scores/<name>.json in the assistant-axis layout)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RolloutFormatError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    if not isinstance(raw, dict):
        raise RolloutFormatError(f"{path}: expected one JSON object mapping score keys to scores")
    scores: dict[str, int | str] = {}
    source: dict[str, str] = {}
    report = ScoreReport(keys=len(raw))
    for key, value in raw.items():
        canonical, shape = _canonical_key(key, kind, path)
        report.shapes[shape] += 1
        if value == REFUSAL and kind.allows_refusal:
            value = REFUSAL
        else:
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
        if canonical in scores and scores[canonical] != value:
            raise RolloutFormatError(
                f"{path}: keys {source[canonical]!r} and {key!r} both mean {canonical!r} but hold different "
                f"scores ({scores[canonical]!r} and {value!r}); keep one"
            )
        scores[canonical] = value
        source[canonical] = key
    return scores, report


def read_scores(path: Path | str, kind: PersonaKind) -> dict[str, int | str]:
    """The scores of one file, keyed ``{label}_p{i}_q{j}`` (see ``read_scores_with_report``)."""
    return read_scores_with_report(path, kind)[0]
