"""The judge's next-token distribution, read from answer bodies exactly as OpenAI-compatible servers send them.

Layouts read (the first one present wins):

- ``chat``: ``choices[0].logprobs.content[i] = {token, logprob, bytes, top_logprobs: [{token,
  logprob, bytes}]}``: OpenAI, vLLM, SGLang, TGI, llama.cpp server since b4356 (Dec 2024, which
  adds an ``id``), Ollama's ``/v1`` endpoint since 0.12.11.
- ``completions``: ``choices[0].logprobs = {tokens, token_logprobs, top_logprobs: [{token:
  logprob}]}``: the legacy completions layout (OpenAI ``/v1/completions``, vLLM, llama-cpp-python),
  which some routers and older servers still put in chat answers.
- ``llama.cpp``: top-level ``completion_probabilities``: before Dec 2024 ``[{content, probs:
  [{tok_str, prob}]}]`` (probabilities, not logprobs); since then ``[{token, logprob, bytes,
  top_logprobs}]``, or ``[{token, prob, top_probs: [{token, prob}]}]`` with ``post_sampling_probs``.
- ``ollama``: top-level ``logprobs: [{token, logprob, bytes, top_logprobs}]`` (``/api/chat`` and
  ``/api/generate`` since 0.12.11).

Token text: the ``bytes`` field when a server sends it (UTF-8 bytes of the token), else the token
string with tokenizer markers undone: byte-level BPE (GPT-2's byte-to-unicode table, ``Ġ`` = space),
SentencePiece (``▁`` = space, ``<0x0A>`` byte tokens). vLLM's ``return_tokens_as_token_ids``
(``"token_id:123"``) carries no text and is refused.

Values: a logprob must be a number <= 0; ``-inf`` (and a probability of 0) is a token the judge
never picks. ``NaN``, ``null``, ``+inf``, a positive logprob, a probability outside 0-1 or a
non-number make the whole answer an ``AnswerError`` that names the entry: numbers a server got
wrong once cannot be trusted for the rest of the distribution.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

# Tolerance for servers that round a logprob of ~0 to a tiny positive number.
_LOGPROB_SLACK = 1e-4
_THINKING_MARKERS = ("<think", "<|think", "<thinking", "<|thinking", "<reasoning", "<|reasoning", "<|begin_of_thought",
                     "◁think", "<seed:think")
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
REASONING_FIX = (
    "the judge is a reasoning model: its answer starts with a thinking block, so the first token is not the score. "
    "Disable thinking (vLLM/SGLang: extra_body chat_template_kwargs {\"enable_thinking\": false}; Qwen3: add /no_think; "
    "llama.cpp: --reasoning-budget 0) or use a non-reasoning judge model"
)


class AnswerError(ValueError):
    """A judge answer that cannot give a score; ``kind`` says which problem it met.

    Kinds: ``no_logprobs``, ``value`` (NaN, null, +inf, positive or non-number), ``layout``,
    ``token_ids``, ``reasoning``, ``provider`` (an ``error`` object in the body).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Candidate:
    text: str  # the token's text, markers undone
    logprob: float  # <= 0, or -inf


@dataclass(frozen=True)
class Position:
    """One generated position: the chosen token (when the server names it) and the top candidates."""

    chosen: str | None
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class Answer:
    positions: tuple[Position, ...]
    layout: str

    @property
    def first(self) -> Position:
        return self.positions[0]


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """Inverse of the byte-level BPE alphabet: printable bytes stand for themselves, the other 68
    bytes (controls, space, 127-160, 173) are shifted to U+0100 onwards in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            table[chr(256 + shifted)] = byte
            shifted += 1
    return table


def decode_token(token: str) -> str:
    """The text a token string stands for, with byte-level BPE and SentencePiece markers undone."""
    if token.startswith("token_id:"):
        raise AnswerError("token_ids", f"the server sent token ids ({token!r}) instead of token text; "
                                       "turn off return_tokens_as_token_ids on the server")
    table = _byte_level_decoder()
    # Byte-level BPE shows raw bytes as shifted characters (U+0100-U+0143: 'Ġ' space, 'Ċ' newline).
    if any(0x100 <= ord(ch) <= 0x143 for ch in token) and all(ch in table for ch in token):
        return bytes(table[ch] for ch in token).decode("utf-8", errors="replace")
    if _BYTE_TOKEN.fullmatch(token):
        return bytes([int(_BYTE_TOKEN.fullmatch(token).group(1), 16)]).decode("utf-8", errors="replace")
    return token.replace("▁", " ")


def token_text(token: Any, raw_bytes: Any = None, where: str = "token") -> str:
    if isinstance(raw_bytes, list) and raw_bytes and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256
                                                          for b in raw_bytes):
        return bytes(raw_bytes).decode("utf-8", errors="replace")
    if not isinstance(token, str):
        raise AnswerError("layout", f"{where}: token {token!r} is not text")
    return decode_token(token)


def number_value(text: str) -> int | None:
    """The integer a token spells (any script's decimal digits, full-width too, after NFKC), else None."""
    normalized = unicodedata.normalize("NFKC", text).strip()
    if normalized and normalized.isdecimal():
        return int(normalized)
    return None


def starts_thinking(text: str | None) -> bool:
    return bool(text) and text.strip().lower().startswith(_THINKING_MARKERS)


def checked_logprob(value: Any, where: str) -> float:
    if value is None:
        raise AnswerError("value", f"{where}: the logprob is null")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnswerError("value", f"{where}: the logprob {value!r} is not a number")
    number = float(value)
    if math.isnan(number):
        raise AnswerError("value", f"{where}: the logprob is NaN")
    if number > _LOGPROB_SLACK:
        raise AnswerError("value", f"{where}: the logprob {number} is above 0, so it is not a log-probability")
    return min(number, 0.0)


def checked_probability(value: Any, where: str) -> float:
    """A probability (llama.cpp's ``prob``) as a logprob; 0 is -inf."""
    if value is None:
        raise AnswerError("value", f"{where}: the probability is null")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnswerError("value", f"{where}: the probability {value!r} is not a number")
    number = float(value)
    if math.isnan(number):
        raise AnswerError("value", f"{where}: the probability is NaN")
    if not 0.0 <= number <= 1.0 + _LOGPROB_SLACK:
        raise AnswerError("value", f"{where}: the probability {number} is outside 0-1")
    return math.log(number) if number > 0 else -math.inf


def provider_error(body: Any) -> dict | None:
    """The ``error`` object a router put in an HTTP 200 body, at the top or inside the first choice."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("error"), dict):
        return body["error"]
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict) and isinstance(choices[0].get("error"), dict):
        return choices[0]["error"]
    return None


def describe_provider_error(error: dict) -> str:
    code = error.get("code") or error.get("type") or "?"
    message = str(error.get("message") or "no message").strip()
    provider = (error.get("metadata") or {}).get("provider_name") if isinstance(error.get("metadata"), dict) else None
    return f"provider error {code}: {message}" + (f" (provider {provider})" if provider else "")


def _entry_candidates(entries: Any, where: str, value_key: str = "logprob") -> tuple[Candidate, ...]:
    if not isinstance(entries, list):
        raise AnswerError("layout", f"{where} is {type(entries).__name__}, expected a list")
    out = []
    for number, entry in enumerate(entries):
        label = f"{where}[{number}]"
        if not isinstance(entry, dict):
            raise AnswerError("layout", f"{label} is {type(entry).__name__}, expected an object")
        text = token_text(entry.get("token", entry.get("tok_str")), entry.get("bytes"), label)
        label = f"{label} ({text!r})"
        if value_key == "prob" or ("logprob" not in entry and "prob" in entry):
            out.append(Candidate(text, checked_probability(entry.get("prob"), label)))
        else:
            out.append(Candidate(text, checked_logprob(entry.get("logprob"), label)))
    return tuple(out)


def _token_entries(items: list, where: str) -> tuple[Position, ...]:
    """Positions from a list of ``{token, logprob|prob, top_logprobs|top_probs|probs}`` entries."""
    positions = []
    for number, item in enumerate(items):
        label = f"{where}[{number}]"
        if not isinstance(item, dict):
            raise AnswerError("layout", f"{label} is {type(item).__name__}, expected an object")
        raw = item.get("token", item.get("content"))
        chosen = token_text(raw, item.get("bytes"), label) if raw is not None else None
        if "top_logprobs" in item and item["top_logprobs"] is not None:
            candidates = _entry_candidates(item["top_logprobs"], f"{label}.top_logprobs")
        elif "top_probs" in item:
            candidates = _entry_candidates(item["top_probs"], f"{label}.top_probs", "prob")
        elif "probs" in item:
            candidates = _entry_candidates(item["probs"], f"{label}.probs", "prob")
        else:
            candidates = ()
        if not candidates and chosen is not None:
            # Only the sampled token: its own value is the whole distribution we have.
            if "logprob" in item:
                candidates = (Candidate(chosen, checked_logprob(item["logprob"], f"{label} ({chosen!r})")),)
            elif "prob" in item:
                candidates = (Candidate(chosen, checked_probability(item["prob"], f"{label} ({chosen!r})")),)
        positions.append(Position(chosen, candidates))
    return tuple(positions)


def _completions_layout(logprobs: dict) -> tuple[Position, ...]:
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    positions = []
    for number in range(max(len(tokens), len(tops))):
        label = f"logprobs.top_logprobs[{number}]"
        chosen = token_text(tokens[number], None, f"logprobs.tokens[{number}]") if number < len(tokens) else None
        top = tops[number] if number < len(tops) else None
        if top is None:
            candidates: tuple[Candidate, ...] = ()
            if chosen is not None and number < len(values):
                candidates = (Candidate(chosen, checked_logprob(values[number], f"logprobs.token_logprobs[{number}]")),)
        elif isinstance(top, dict):
            candidates = tuple(Candidate(text := token_text(token, None, label), checked_logprob(value, f"{label} ({text!r})"))
                               for token, value in top.items())
        elif isinstance(top, list):  # some servers send the chat-style list here
            candidates = _entry_candidates(top, label)
        else:
            raise AnswerError("layout", f"{label} is {type(top).__name__}, expected an object of token: logprob")
        positions.append(Position(chosen, candidates))
    return tuple(positions)


def read_answer(body: Any) -> Answer:
    """Every generated position of a chat-completions body, in whichever layout the server used.

    Raises ``AnswerError`` for a provider ``error`` object, a reasoning model's thinking block, a
    body with no logprobs, a layout that cannot be read, or a value that is not a log-probability.
    """
    error = provider_error(body)
    if error is not None:
        raise AnswerError("provider", describe_provider_error(error))
    if not isinstance(body, dict):
        raise AnswerError("layout", f"the answer is {type(body).__name__}, expected a JSON object")
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    answer: Answer | None = None
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list) and logprobs["content"]:
        answer = Answer(_token_entries(logprobs["content"], "choices[0].logprobs.content"), "chat")
    elif isinstance(logprobs, dict) and (logprobs.get("top_logprobs") or logprobs.get("tokens")):
        answer = Answer(_completions_layout(logprobs), "completions")
    elif isinstance(body.get("completion_probabilities"), list) and body["completion_probabilities"]:
        answer = Answer(_token_entries(body["completion_probabilities"], "completion_probabilities"), "llama.cpp")
    elif isinstance(body.get("logprobs"), list) and body["logprobs"]:
        answer = Answer(_token_entries(body["logprobs"], "logprobs"), "ollama")
    content = message.get("content") if "content" in message else (body.get("message") or {}).get("content")
    thinking = any(message.get(key) is not None for key in ("reasoning_content", "reasoning", "thinking"))
    first_text = None
    if answer is not None and answer.positions:
        first = answer.first
        first_text = first.chosen if first.chosen is not None else (
            max(first.candidates, key=lambda c: c.logprob).text if first.candidates else None)
    if starts_thinking(first_text) or starts_thinking(content if isinstance(content, str) else None) or (
            thinking and not content):
        raise AnswerError("reasoning", REASONING_FIX)
    if answer is None or not answer.positions or not answer.first.candidates:
        raise AnswerError("no_logprobs", "the judge returned no logprobs, so it cannot be scored "
                                         "(use a model and server that return top_logprobs)")
    return answer


def first_token_candidates(body: Any) -> Sequence[Candidate]:
    return read_answer(body).first.candidates
