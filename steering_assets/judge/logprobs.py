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

Token text is read from both fields an entry may hold, the UTF-8 ``bytes`` and the ``token``
string, with vocabulary markers undone in each, because servers fill either with the token as its
vocabulary spells it (``undo_markers``): GPT-2's byte-level BPE (``Ġ`` space, ``Ċ`` newline; GPT-2,
Llama-3, Qwen), SentencePiece's ``▁`` space and its ``<0x20>`` byte fallback (Llama-2, Mistral,
Gemma). When the two disagree after that, the one that decodes to printable text wins, ``bytes``
when both do (``read_token``); each candidate keeps that reading for the setup probe to report.
vLLM's ``return_tokens_as_token_ids`` (``"token_id:123"``) carries no text and is refused.

Values: a logprob must be a number <= 0; ``-inf`` (and a probability of 0) is a token the judge
never picks. ``NaN``, ``null``, ``+inf``, a positive logprob, a probability outside 0-1 or a
non-number make the whole answer an ``AnswerError`` that names the entry: numbers a server got
wrong once cannot be trusted for the rest of the distribution.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

# Tolerance for servers that round a logprob of ~0 to a tiny positive number.
_LOGPROB_SLACK = 1e-4
_THINKING_MARKERS = ("<think", "<|think", "<thinking", "<|thinking", "<reasoning", "<|reasoning", "<|begin_of_thought",
                     "◁think", "<seed:think")
# SentencePiece byte fallback: a byte with no piece of its own is the token "<0xNN>".
_BYTE_TOKENS = re.compile(r"(?:<0x[0-9A-Fa-f]{2}>)+")
# Spellings a token's text can arrive in (``TokenReading.spellings``).
TEXT, BYTE_LEVEL, SENTENCEPIECE, BYTE_FALLBACK = "text", "byte-level BPE", "SentencePiece", "byte fallback"
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
class TokenReading:
    """A token's text and how it was read: from which field, in which spelling, and why that field.

    ``source`` is ``"bytes and token"`` when both were read and agree, else the field used;
    ``from_token``/``from_bytes`` are each field's text with markers undone (None: not sent or not
    text), ``spellings`` the vocabulary spelling met in each field read.
    """

    text: str
    source: str
    reason: str
    where: str = "token"
    token_field: str = "token"  # "tok_str" or "content" in llama.cpp's layouts
    token: Any = None
    raw_bytes: Any = None
    from_token: str | None = None
    from_bytes: str | None = None
    spellings: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """Which field gave the text and why, e.g. "`bytes` and `token` agree (byte-level BPE in `bytes`, undone)"."""
        undone = [f"{spelling} in `{name}`" for name, spelling in self.spellings if spelling != TEXT]
        return self.reason + (f" ({', '.join(undone)}, undone)" if undone else "")

    def detail(self) -> str:
        """The raw fields and what each read as, for a message about a token that could not be used."""
        parts = [f"`{self.token_field}` {self.token!r} " + (f"reads {self.from_token!r}" if self.from_token is not None
                                                          else "is not text")]
        if self.raw_bytes is not None:
            parts.append(f"`bytes` {self.raw_bytes!r} " + (f"read {self.from_bytes!r}" if self.from_bytes is not None
                                                           else "are not byte values 0-255"))
        return f"{self.where}: {', '.join(parts)}; {self.describe()}"


@dataclass(frozen=True)
class Candidate:
    text: str  # the token's text, markers undone
    logprob: float  # <= 0, or -inf
    reading: TokenReading | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Position:
    """One generated position: the chosen token (when the server names it) and the top candidates."""

    chosen: str | None
    candidates: tuple[Candidate, ...]
    reading: TokenReading | None = field(default=None, compare=False, repr=False)  # how ``chosen`` was read

    @property
    def top(self) -> TokenReading | None:
        """How the token the judge answered was read: the chosen one, else the likeliest candidate."""
        if self.chosen is not None:
            return self.reading
        return max(self.candidates, key=lambda c: c.logprob).reading if self.candidates else None


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


def printable(text: str) -> bool:
    """No replacement character (a cut UTF-8 sequence) and no control character but tab, newline, CR."""
    return "\ufffd" not in text and not any(
        unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n\r" for ch in text)


def undo_markers(text: str) -> tuple[str, str]:
    """The text a vocabulary spelling stands for, and the spelling (``TEXT`` when nothing was undone).

    - SentencePiece byte fallback (Llama-2, Mistral, Gemma): a token of one or more ``<0xNN>`` is
      those bytes. A lone byte of a longer character decodes to U+FFFD: it has no text of its own.
    - GPT-2's byte-level BPE (also Llama-3, Qwen): every byte is one character of a shifted
      alphabet, printable bytes themselves and the other 68 at U+0100-U+0143 (``Ġ`` space, ``Ċ``
      newline). Read so only when the string holds such a shifted character, every character is in
      the alphabet and the bytes decode to valid, printable UTF-8: real text the server sent as it
      is (``é``, ``８``, ``Ā``, which would be byte 0) is left alone.
    - SentencePiece: ``▁`` is a space.
    """
    if _BYTE_TOKENS.fullmatch(text):
        raw = bytes(int(text[i + 3:i + 5], 16) for i in range(0, len(text), 6))
        return raw.decode("utf-8", errors="replace"), BYTE_FALLBACK
    table = _byte_level_decoder()
    if any(0x100 <= ord(ch) <= 0x143 for ch in text) and all(ch in table for ch in text):
        try:
            decoded = bytes(table[ch] for ch in text).decode("utf-8")
        except UnicodeDecodeError:
            decoded = None
        if decoded is not None and printable(decoded):
            return decoded, BYTE_LEVEL
    if "▁" in text:
        return text.replace("▁", " "), SENTENCEPIECE
    return text, TEXT


def _refuse_token_ids(text: str) -> None:
    if text.startswith("token_id:"):
        raise AnswerError("token_ids", f"the server sent token ids ({text!r}) instead of token text; "
                                       "turn off return_tokens_as_token_ids on the server")


def decode_token(token: str) -> str:
    """The text a token string stands for, with byte-level BPE and SentencePiece markers undone."""
    _refuse_token_ids(token)
    return undo_markers(token)[0]


def _byte_values(raw_bytes: Any) -> bytes | None:
    if isinstance(raw_bytes, list) and raw_bytes and all(
            isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in raw_bytes):
        return bytes(raw_bytes)
    return None


def read_token(token: Any, raw_bytes: Any = None, where: str = "token", token_field: str = "token") -> TokenReading:
    """A token's text from its ``bytes`` and its ``token`` string, markers undone in both.

    When both are read and differ, the one that is printable text wins (``bytes`` when both or
    neither are: it is the field OpenAI defines as the token's UTF-8). Raises ``AnswerError`` when
    neither can be read, naming both fields, or for a token id sent in place of text.
    """
    from_token = from_bytes = None
    spellings = []
    values = _byte_values(raw_bytes)
    if values is not None:
        from_bytes, spelling = undo_markers(values.decode("utf-8", errors="replace"))
        spellings.append(("bytes", spelling))
    if isinstance(token, str):
        from_token, spelling = undo_markers(token)
        spellings.append((token_field, spelling))
    fields = dict(where=where, token_field=token_field, token=token, raw_bytes=raw_bytes, from_token=from_token,
                  from_bytes=from_bytes, spellings=tuple(spellings))
    name = f"`{token_field}`"
    if from_bytes is None and from_token is None:
        shown = f" or `bytes` {raw_bytes!r}" if raw_bytes is not None else ""
        raise AnswerError("layout", f"{where}: cannot read the token's text from {name} {token!r}{shown}")
    if from_bytes is None:
        why = "no `bytes` sent" if raw_bytes is None or raw_bytes == [] else "`bytes` are not byte values 0-255"
        reading = TokenReading(from_token, token_field, f"{name} ({why})", **fields)
    elif from_token is None:
        reading = TokenReading(from_bytes, "bytes", f"`bytes` ({name} is not text)", **fields)
    elif from_bytes == from_token:
        reading = TokenReading(from_bytes, "bytes and token", f"`bytes` and {name} agree", **fields)
    elif printable(from_token) and not printable(from_bytes):
        reading = TokenReading(from_token, token_field, f"{name} {from_token!r}, since `bytes` read {from_bytes!r}, "
                                                        "which is not printable text", **fields)
    else:
        why = "neither is printable text" if not printable(from_bytes) else "both are printable text"
        reading = TokenReading(from_bytes, "bytes", f"`bytes` {from_bytes!r} over {name} {from_token!r}: {why}, and "
                                                    "`bytes` is the field defined as the token's UTF-8", **fields)
    _refuse_token_ids(reading.text)  # vLLM's return_tokens_as_token_ids spells "token_id:123" in both fields
    return reading


def describe_readings(readings: Sequence[TokenReading | None]) -> str:
    """How a few tokens' text was read, each distinct account once, for a judge's setup metadata."""
    accounts = dict.fromkeys(r.describe() for r in readings if r is not None)
    return "; ".join(accounts) if accounts else "no token text"


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
        name = "tok_str" if "token" not in entry and "tok_str" in entry else "token"
        reading = read_token(entry.get(name), entry.get("bytes"), label, name)
        label = f"{label} ({reading.text!r})"
        if value_key == "prob" or ("logprob" not in entry and "prob" in entry):
            out.append(Candidate(reading.text, checked_probability(entry.get("prob"), label), reading))
        else:
            out.append(Candidate(reading.text, checked_logprob(entry.get("logprob"), label), reading))
    return tuple(out)


def _token_entries(items: list, where: str) -> tuple[Position, ...]:
    """Positions from a list of ``{token, logprob|prob, top_logprobs|top_probs|probs}`` entries."""
    positions = []
    for number, item in enumerate(items):
        label = f"{where}[{number}]"
        if not isinstance(item, dict):
            raise AnswerError("layout", f"{label} is {type(item).__name__}, expected an object")
        name = "content" if "token" not in item and "content" in item else "token"
        sent = item.get(name) is not None or item.get("bytes") is not None
        reading = read_token(item.get(name), item.get("bytes"), label, name) if sent else None
        chosen = reading.text if reading is not None else None
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
                candidates = (Candidate(chosen, checked_logprob(item["logprob"], f"{label} ({chosen!r})"), reading),)
            elif "prob" in item:
                candidates = (Candidate(chosen, checked_probability(item["prob"], f"{label} ({chosen!r})"), reading),)
        positions.append(Position(chosen, candidates, reading))
    return tuple(positions)


def _completions_layout(logprobs: dict) -> tuple[Position, ...]:
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    positions = []
    for number in range(max(len(tokens), len(tops))):
        label = f"logprobs.top_logprobs[{number}]"
        reading = read_token(tokens[number], None, f"logprobs.tokens[{number}]") if number < len(tokens) else None
        chosen = reading.text if reading is not None else None
        top = tops[number] if number < len(tops) else None
        if top is None:
            candidates: tuple[Candidate, ...] = ()
            if chosen is not None and number < len(values):
                candidates = (Candidate(chosen, checked_logprob(values[number], f"logprobs.token_logprobs[{number}]"),
                                        reading),)
        elif isinstance(top, dict):
            candidates = tuple(Candidate((read := read_token(token, None, label)).text,
                                         checked_logprob(value, f"{label} ({read.text!r})"), read)
                               for token, value in top.items())
        elif isinstance(top, list):  # some servers send the chat-style list here
            candidates = _entry_candidates(top, label)
        else:
            raise AnswerError("layout", f"{label} is {type(top).__name__}, expected an object of token: logprob")
        positions.append(Position(chosen, candidates, reading))
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

