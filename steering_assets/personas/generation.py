"""Rollouts generated inside the platform: assistant-axis's stage 1 from its instruction files.

Every instruction of a persona is asked every question (roles: the shared extraction questions;
traits: their own), and the replies are written in the rollout layout the persona datasets read:

    roles:   {data_root}/{source_model}/responses/{role}.jsonl                (assistant-axis layout;
             default.json's replies go to responses/default.jsonl, a baseline role)
    traits:  {data_root}/{source_model}/traits_240/responses/{trait}.jsonl    (persona-subspace layout)

A line is ``system_prompt, label, prompt_index, question_index, question, conversation`` as the
public writers emit it. A role's instruction is a system turn when the chat template has a
system role, else it opens the user turn (``"{instruction}\\n\\n{question}"``, as the writers do
for Gemma-2); an empty instruction gives a conversation without a system turn. Traits follow the
persona-subspace trait writer: the instruction always opens the user turn, labels ``pos`` and
``neg`` per instruction pair, plus one ``neutral`` row per question (the question alone).

Generation is resumable: each finished reply is appended to a cache (one JSON object a line,
flushed per batch) keyed by the request, the model and the sampling settings, so a crash keeps
every finished reply and a re-run generates only what is missing. The responses file is written
atomically once every reply exists.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from steering_assets.core.artifacts import atomic_path, fingerprint
from steering_assets.core.names import validate_name
from steering_assets.formats.instructions import InstructionSet, fill
from steering_assets.formats.rollouts import ROLES, TRAITS, PersonaKind
from steering_assets.models.generation import ReplyGenerator, SamplingSettings

GENERATION_CODE_VERSION = 1


@dataclass(frozen=True)
class RolloutRequest:
    """One reply to generate: where it goes in the rollout file and the chat messages that ask for it."""

    label: str
    prompt_index: int
    question_index: int
    question: str
    system_prompt: str
    messages: tuple[tuple[str, str], ...]  # (role, content) turns before the reply

    @property
    def row_key(self) -> str:
        return f"{self.label}_p{self.prompt_index}_q{self.question_index}"

    def prompt(self) -> list[dict[str, str]]:
        """The chat messages the reply answers."""
        return [{"role": role, "content": content} for role, content in self.messages]

    def conversation(self, reply: str) -> list[dict[str, str]]:
        return self.prompt() + [{"role": "assistant", "content": reply}]

    def row(self, reply: str) -> dict[str, Any]:
        return {"system_prompt": self.system_prompt, "label": self.label, "prompt_index": self.prompt_index,
                "question_index": self.question_index, "question": self.question, "conversation": self.conversation(reply)}






def _asking(instruction: str, question: str, system_role: bool) -> tuple[tuple[str, str], ...]:
    if not instruction.strip():
        return (("user", question),)
    if system_role:
        return (("system", instruction), ("user", question))
    return (("user", f"{instruction}\n\n{question}"),)


def plan_rollouts(spec: InstructionSet, questions: Sequence[str] | None, model_name: str, system_role: bool) -> list[RolloutRequest]:
    """Every (instruction, question) request of ``spec``, in file order.

    ``questions``: the shared extraction questions (roles); a trait's own list is used for traits.
    ``model_name`` replaces ``{model_name}``. Raises ValueError when a role gets no questions.
    """
    if spec.kind is TRAITS:
        asked = spec.questions or ()
    else:
        if not questions:
            raise ValueError(f"{spec.path}: roles are asked the shared extraction questions, and none were given")
        asked = tuple(questions)
    requests = []
    for prompt_index, prompt in enumerate(spec.prompts):
        for label in (("pos", "neg") if spec.kind is TRAITS else ("pos",)):
            instruction = fill(prompt[label], model_name=model_name)
            for question_index, question in enumerate(asked):
                # The trait writer puts the instruction in the user turn whatever the model.
                messages = _asking(instruction, question, system_role and spec.kind is ROLES)
                requests.append(RolloutRequest(label, prompt_index, question_index, question, instruction, messages))
    if spec.kind is TRAITS:
        requests += [RolloutRequest("neutral", 0, j, q, "", (("user", q),)) for j, q in enumerate(asked)]
    return requests


def generated_layout(kind: PersonaKind):
    """The layout generated rollouts of ``kind`` are written in: assistant-axis's for roles, persona-subspace's for traits."""
    from steering_assets.formats.rollouts import ASSISTANT_AXIS, PERSONA_SUBSPACE

    return ASSISTANT_AXIS if kind is ROLES else PERSONA_SUBSPACE


def rollout_path(data_root: Path | str, kind: PersonaKind, source_model: str, name: str) -> Path:
    """Where generated replies go, in a layout ``PersonaRollouts`` discovers (see the module docstring)."""
    folder = generated_layout(kind).responses_dir(data_root, validate_name(source_model, "source model"), kind)
    return folder / f"{validate_name(name, kind.column)}.jsonl"


def scores_path(data_root: Path | str, kind: PersonaKind, source_model: str, name: str) -> Path:
    """Where the judge's scores of generated replies go (``scores/`` for roles, ``traits_240/extract_scores/``)."""
    folder = generated_layout(kind).scores_dir(data_root, validate_name(source_model, "source model"), kind)
    return folder / f"{validate_name(name, kind.column)}.json"










class ReplyCache:
    """Finished replies, one ``{"key", "reply"}`` object a line, appended and flushed per batch.

    A line cut short by a crash is ignored when read (its reply is generated again).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.replies: dict[str, str] = {}
        self.torn_lines = 0
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.replies[row["key"]] = row["reply"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.torn_lines += 1

    def add(self, items: Iterable[tuple[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            for key, reply in items:
                self.replies[key] = reply
                handle.write(json.dumps({"key": key, "reply": reply}, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class GenerationOutcome:
    path: Path
    rows: int
    generated: int
    reused: int
    torn_cache_lines: int
    samples: list[dict[str, Any]]


def request_key(request: RolloutRequest, generator_name: str, settings: SamplingSettings) -> str:
    return fingerprint({"code": GENERATION_CODE_VERSION, "model": generator_name, "settings": asdict(settings),
                        "messages": request.messages, "row": request.row_key})


def generate_rollouts(requests: Sequence[RolloutRequest], generator: ReplyGenerator, settings: SamplingSettings,
                      out: Path, cache: ReplyCache, log: Callable[[str], None] | None = None) -> GenerationOutcome:
    """Generate the replies ``cache`` lacks, then write every request's row to ``out`` atomically.

    ``log`` gets a progress line per batch. Returns counts and a few sample rows.
    """
    say = log or (lambda message: None)
    keys = [request_key(r, generator.name, settings) for r in requests]
    missing = [i for i, key in enumerate(keys) if key not in cache.replies]
    reused = len(requests) - len(missing)
    if missing:
        say(f"{out.name}: generating {len(missing)} replies ({reused} already generated) with {generator.name}")
        done = [0]

        def on_batch(indices: list[int], replies: list[str]) -> None:
            cache.add((keys[missing[i]], reply) for i, reply in zip(indices, replies))
            done[0] += len(indices)
            say(f"{out.name}: {done[0]}/{len(missing)} replies")

        generator.generate([requests[i].prompt() for i in missing], settings, on_batch)
    rows = [r.row(cache.replies[key]) for r, key in zip(requests, keys)]
    with atomic_path(out) as tmp:
        tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return GenerationOutcome(out, len(rows), len(missing), reused, cache.torn_lines, rows[:3])
