"""Instruction files in assistant-axis's own layout: the input of rollout generation.

    {instructions_root}/roles/instructions/{role}.json     275 roles, plus default.json
    {instructions_root}/traits/instructions/{trait}.json   240 traits
    {instructions_root}/extraction_questions.jsonl         {"question": "..."} a line

A role file is ``{"instruction": [{"pos": "You are a ..."}, ...], "eval_prompt": "..."}``;
``default.json`` holds the neutral assistant prompts (one of them usually ``""``) and needs no
``eval_prompt``. A trait file has ``pos`` and ``neg`` in every instruction entry, its own
``questions`` list and an ``eval_prompt`` on the 0-100 scale. Roles are asked the shared
extraction questions. ``{model_name}`` in a prompt is replaced by the model's name; an eval
prompt may also hold ``{question}`` and ``{answer}`` (assistant-axis's judge template). Any
other placeholder is an error, as is a missing key, an entry without ``pos``, an empty
question list or a non-string prompt: each names the file and the key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from steering_assets.core.errors import InputError
from steering_assets.core.jsonl import iter_json_objects
from steering_assets.core.names import validate_name
from steering_assets.formats.rollouts import BASELINE_ROLES, ROLES, TRAITS, PersonaKind

INSTRUCTION_DIRS = {"roles": Path("roles") / "instructions", "traits": Path("traits") / "instructions"}
QUESTIONS_FILE = "extraction_questions.jsonl"
PROMPT_PLACEHOLDERS = frozenset({"model_name"})
EVAL_PLACEHOLDERS = frozenset({"model_name", "question", "answer"})
_PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}]*)\}(?!\})")


class InstructionFileError(InputError, ValueError):
    """An instruction or questions file that does not follow assistant-axis's layout."""


@dataclass(frozen=True)
class InstructionSet:
    """One persona's instruction file, read and checked.

    ``prompts``: one ``{"pos": ...}`` (traits: ``{"pos", "neg"}``) per instruction, in file order
    (``prompt_index`` is the position). ``questions``: the trait's own list, None for roles
    (they take the shared extraction questions). ``eval_prompt``: None only for baselines.
    """

    kind: PersonaKind
    name: str
    path: Path
    prompts: tuple[dict[str, str], ...]
    questions: tuple[str, ...] | None
    eval_prompt: str | None

    @property
    def is_baseline(self) -> bool:
        return self.kind is ROLES and self.name in BASELINE_ROLES


def check_placeholders(text: str, allowed: frozenset[str], where: str) -> None:
    unknown = sorted({name for name in _PLACEHOLDER.findall(text) if name not in allowed})
    if unknown:
        raise InstructionFileError(
            f"{where}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; only "
            f"{', '.join('{' + a + '}' for a in sorted(allowed))} are replaced (write a literal brace as {{{{ or }}}})"
        )


def fill(text: str, **values: str) -> str:
    """``text`` with each ``{name}`` of ``values`` replaced; other braces are left alone (``{{`` stays ``{{``)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def read_instruction_file(path: Path | str, kind: PersonaKind) -> InstructionSet:
    """Read one ``{name}.json`` of ``kind`` (see the module docstring). Raises ``InstructionFileError``."""
    path = Path(path)
    name = validate_name(path.stem, f"instruction file name {path.name!r}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InstructionFileError(
            f"{path}: no such instruction file; its partition was added while the file existed. Restore the file, "
            f"or delete the partition {name!r} (UI: the asset's Partitions tab) to stop generating it") from None
    except json.JSONDecodeError as err:
        raise InstructionFileError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from err
    if not isinstance(data, dict):
        raise InstructionFileError(f"{path}: expected a JSON object with an 'instruction' list, got {type(data).__name__}")
    entries = data.get("instruction")
    if not isinstance(entries, list) or not entries:
        raise InstructionFileError(f"{path}: key 'instruction' must be a non-empty list of {{\"pos\": ...}} objects"
                                   + (" with 'neg'" if kind is TRAITS else "") + f", got {entries!r:.60}")
    baseline = kind is ROLES and name in BASELINE_ROLES
    sides = ("pos", "neg") if kind is TRAITS else ("pos",)
    prompts = []
    for index, entry in enumerate(entries):
        where = f"{path}: instruction[{index}]"
        if not isinstance(entry, dict):
            raise InstructionFileError(f"{where}: expected an object with {' and '.join(repr(s) for s in sides)}, got {entry!r:.60}")
        prompt = {}
        for side in sides:
            if side not in entry:
                raise InstructionFileError(f"{where}: missing key {side!r}" + (" (a trait instruction has both 'pos' and 'neg')" if kind is TRAITS else ""))
            if not isinstance(entry[side], str):
                raise InstructionFileError(f"{where}.{side}: expected a string, got {type(entry[side]).__name__}")
            if not entry[side].strip() and not baseline:
                raise InstructionFileError(f"{where}.{side}: empty prompt (only default.json may hold an empty prompt)")
            check_placeholders(entry[side], PROMPT_PLACEHOLDERS, f"{where}.{side}")
            prompt[side] = entry[side]
        prompts.append(prompt)
    questions = None
    if kind is TRAITS:
        raw = data.get("questions")
        if not isinstance(raw, list) or not raw:
            raise InstructionFileError(f"{path}: key 'questions' must be a non-empty list of strings (a trait asks its own questions)")
        bad = [i for i, q in enumerate(raw) if not isinstance(q, str) or not q.strip()]
        if bad:
            raise InstructionFileError(f"{path}: questions[{bad[0]}] is not a non-empty string")
        questions = tuple(raw)
    eval_prompt = data.get("eval_prompt")
    if eval_prompt is None and not baseline:
        raise InstructionFileError(f"{path}: missing key 'eval_prompt' (the judge's rubric: 0-3 role adherence, traits 0-100)")
    if eval_prompt is not None:
        if not isinstance(eval_prompt, str) or not eval_prompt.strip():
            raise InstructionFileError(f"{path}: key 'eval_prompt' must be a non-empty string")
        check_placeholders(eval_prompt, EVAL_PLACEHOLDERS, f"{path}: eval_prompt")
    return InstructionSet(kind, name, path, tuple(prompts), questions, eval_prompt)


def read_questions(path: Path | str) -> tuple[str, ...]:
    """The shared extraction questions, ``{"question": ...}`` a line. Raises ``InstructionFileError``
    naming the line for a line without a non-empty ``question``, and for a file without questions."""
    path = Path(path)
    if not path.is_file():
        raise InstructionFileError(f"{path}: the shared questions file is missing; roles are asked its questions "
                                   "(one {\"question\": ...} object a line)")
    questions = []
    for where, _, obj in iter_json_objects(path, InstructionFileError):
        question = obj.get("question") if isinstance(obj, dict) else None
        if not isinstance(question, str) or not question.strip():
            raise InstructionFileError(f"{where}: expected {{\"question\": \"...\"}} with a non-empty string")
        questions.append(question)
    if not questions:
        raise InstructionFileError(f"{path}: no questions (expected one {{\"question\": ...}} object a line)")
    return tuple(questions)


def rollout_model_name(display_name: str, override: str | None = None) -> str:
    """The source-model folder generated rollouts go in, and ``{model_name}``: ``override``
    (PERSONA_ROLLOUT_MODEL_NAME, carried by ``InstructionSource.model_name``), else the persona model's short
    name (``ModelSource.display_name``). Raises InvalidNameError for a name that is not one path component."""
    return validate_name(override or display_name, "PERSONA_ROLLOUT_MODEL_NAME" if override else "the persona model's name")


def instruction_path(root: Path | str, kind: PersonaKind, name: str) -> Path:
    return Path(root) / INSTRUCTION_DIRS[kind.name] / f"{validate_name(name, kind.column)}.json"


def discover_instructions(root: Path | str, kind: PersonaKind) -> list[str]:
    """Names of ``kind``'s instruction files under ``root`` (sorted); none when the folder is absent."""
    folder = Path(root) / INSTRUCTION_DIRS[kind.name]
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
