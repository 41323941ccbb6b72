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
from typing import Any, Callable, Iterable, Protocol, Sequence

from steering_assets.artifacts import atomic_path, fingerprint
from steering_assets.personas.instructions import InstructionSet, fill
from steering_assets.personas.layout import ROLES, TRAITS, PersonaKind, validate_name

GENERATION_CODE_VERSION = 1
# assistant-axis samples its rollouts at temperature 0.7, top-p 0.9, up to 512 new tokens.
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.9


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


@dataclass(frozen=True)
class SamplingSettings:
    """How replies are sampled. ``temperature`` 0 is greedy decoding."""

    max_new_tokens: int = 512
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    seed: int = 0


def supports_system_role(tokenizer: Any) -> bool:
    """Whether the chat template renders a system turn (Gemma-2's raises on one; no template: no system role)."""
    if not getattr(tokenizer, "chat_template", None):
        return False
    marker = "\u27e6system-probe\u27e7"
    try:
        text = tokenizer.apply_chat_template([{"role": "system", "content": marker}, {"role": "user", "content": "Hi"}], tokenize=False)
    except Exception:  # jinja raise_exception: "System role not supported"
        return False
    return marker in text


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
    from steering_assets.personas.layout import ASSISTANT_AXIS, PERSONA_SUBSPACE

    return ASSISTANT_AXIS if kind is ROLES else PERSONA_SUBSPACE


def rollout_path(data_root: Path | str, kind: PersonaKind, source_model: str, name: str) -> Path:
    """Where generated replies go, in a layout ``PersonaRollouts`` discovers (see the module docstring)."""
    folder = generated_layout(kind).responses_dir(data_root, validate_name(source_model, "source model"), kind)
    return folder / f"{validate_name(name, kind.column)}.jsonl"


def scores_path(data_root: Path | str, kind: PersonaKind, source_model: str, name: str) -> Path:
    """Where the judge's scores of generated replies go (``scores/`` for roles, ``traits_240/extract_scores/``)."""
    folder = generated_layout(kind).scores_dir(data_root, validate_name(source_model, "source model"), kind)
    return folder / f"{validate_name(name, kind.column)}.json"


def request_seed(seed: int, what: Any) -> int:
    """A 32-bit seed from ``seed`` and a conversation (or prompt): stable across runs and resumes."""
    return int(fingerprint([seed, what])[:8], 16)


class ReplyGenerator(Protocol):
    """A generation backend: replies to chat conversations, in order."""

    name: str

    def generate(self, conversations: Sequence[list[dict[str, str]]], settings: SamplingSettings,
                 on_batch: Callable[[list[int], list[str]], None]) -> None:
        """Generate a reply to every conversation; call ``on_batch(indices, replies)`` as each batch finishes."""


class LocalReplyGenerator:
    """The local model: batched, left-padded generation of chat-formatted prompts.

    Prompts are sorted by length so a batch holds prompts of about one length (less padding).
    Sampling is seeded per batch from ``settings.seed`` and the batch's first prompt, so a run
    repeats itself; greedy decoding (temperature 0) gives the same text as one ``generate`` call
    per prompt (``benchmarks/rollout_generation.py``).
    """

    def __init__(self, model: Any, tokenizer: Any, name: str, batch_size: int = 16):
        self.model, self.tokenizer, self.name, self.batch_size = model, tokenizer, name, batch_size

    def render(self, conversation: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)

    def generate(self, conversations, settings, on_batch) -> None:
        import torch

        from steering_assets.models import padded_batches
        from steering_assets.steering.hook import input_device

        texts = [self.render(c) for c in conversations]
        lengths = [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
        device = input_device(self.model)
        sampling = settings.temperature > 0
        with torch.no_grad(), padded_batches(self.tokenizer, "left", self.name) as pad_id:
            for start in range(0, len(order), self.batch_size):
                indices = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in indices], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                if sampling:
                    torch.manual_seed(request_seed(settings.seed, texts[indices[0]]))
                out = self.model.generate(
                    **batch, max_new_tokens=settings.max_new_tokens, do_sample=sampling, pad_token_id=pad_id,
                    temperature=settings.temperature if sampling else None, top_p=settings.top_p if sampling else None,
                    top_k=None)
                replies = [r.strip() for r in self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)]
                on_batch(indices, replies)


class OpenAIReplyGenerator:
    """An OpenAI-compatible chat-completions server (a vLLM server on a GPU machine, say).

    One request per reply, ``concurrency`` at a time, with the client's retries and backoff;
    ``seed`` is sent per request (from ``settings.seed`` and the conversation, so a resumed run
    asks a missing reply with the seed it would have had) for servers that honour it. A reply with no text or an error body is an error naming the request.
    """

    def __init__(self, model: str, base_url: str | None, api_key: str, concurrency: int = 16, timeout: float = 120.0,
                 max_retries: int = 4, batch_size: int = 32):
        self.name, self.base_url, self.api_key = model, base_url, api_key
        self.concurrency, self.timeout, self.max_retries, self.batch_size = concurrency, timeout, max_retries, batch_size

    def generate(self, conversations, settings, on_batch) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from openai import OpenAI

        client = OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=self.max_retries)

        def one(index: int) -> str:
            response = client.chat.completions.create(
                model=self.name, messages=conversations[index], max_tokens=settings.max_new_tokens,
                temperature=settings.temperature, top_p=settings.top_p, seed=request_seed(settings.seed, conversations[index]))
            choice = response.choices[0] if response.choices else None
            text = choice.message.content if choice is not None and choice.message is not None else None
            if text is None:
                raise RuntimeError(f"{self.name} at {self.base_url}: no reply text for conversation {index} "
                                   f"(finish_reason {getattr(choice, 'finish_reason', None)!r})")
            return text.strip()

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for start in range(0, len(conversations), self.batch_size):
                indices = list(range(start, min(start + self.batch_size, len(conversations))))
                on_batch(indices, list(pool.map(one, indices)))


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
