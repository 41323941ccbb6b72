"""LLM-judge scoring: a probability-weighted 0-100 score from the next token's logprobs.

One chat completion per item with ``max_tokens=1, temperature=0, logprobs=true,
top_logprobs=20``. The score is the probability-weighted mean of the integer tokens
0-100 among the top logprobs, and there is no score when their total probability is
below 0.25. A judge that answers ``REFUSAL`` (or a prefix of it) is recorded as a refusal.

Every judgment is cached by a hash of (judge model, prompt, scoring settings) in a
JSON-lines file that is appended and flushed per judgment, so a crash loses nothing
finished and a re-run only calls the judge for new or changed prompts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

REFUSAL_TOKENS = ("REF", "REFUSAL", "Ref", "refusal")


class JudgeConfigurationError(ValueError):
    """The judge cannot start (missing API key, bad settings): raised before any work."""


@dataclass(frozen=True)
class ScoringSettings:
    max_tokens: int = 1
    temperature: float = 0.0
    top_logprobs: int = 20
    min_weight: float = 0.25


@dataclass(frozen=True)
class Judgment:
    score: float | None
    weight: float  # total probability of the integer tokens 0-100
    refusal: bool = False
    error: str | None = None
    top_token: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.score is not None


def weighted_score(top_logprobs: Iterable[tuple[str, float]], settings: ScoringSettings = ScoringSettings()) -> Judgment:
    """The probability-weighted mean of the integer tokens 0-100 among ``(token, logprob)`` pairs."""
    pairs = list(top_logprobs)
    total, weighted = 0.0, 0.0
    for token, logprob in pairs:
        text = token.strip()
        if text.isdigit() and 0 <= int(text) <= 100:
            probability = math.exp(logprob)
            total += probability
            weighted += probability * int(text)
    top = max(pairs, key=lambda pair: pair[1])[0] if pairs else None
    refusal = bool(top) and top.strip() in REFUSAL_TOKENS
    if total < settings.min_weight:
        return Judgment(score=None, weight=total, refusal=refusal, top_token=top)
    return Judgment(score=weighted / total, weight=total, refusal=False, top_token=top)


def cache_key(judge_model: str, prompt: str, settings: ScoringSettings) -> str:
    payload = json.dumps({"model": judge_model, "prompt": prompt, "settings": asdict(settings)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class JudgmentCache:
    """Append-only JSON-lines cache of finished judgments (errors are not cached, so they retry)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._entries: dict[str, Judgment] = {}
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a crash: that judgment is simply redone
                    self._entries[row["key"]] = Judgment(**row["judgment"])

    def get(self, key: str) -> Judgment | None:
        return self._entries.get(key)

    def put(self, key: str, judgment: Judgment) -> None:
        if judgment.error is not None:
            return
        self._entries[key] = judgment
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written through to the OS per judgment: a killed process loses nothing it finished.
        # (No fsync per line: on 200 judgments it would cost more than the calls themselves.)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "judgment": asdict(judgment)}) + "\n")

    def __len__(self) -> int:
        return len(self._entries)


def judgment_from_body(body: dict[str, Any], settings: ScoringSettings) -> Judgment:
    """Turn a chat-completions JSON body (``choices[0].logprobs.content[0].top_logprobs``) into a Judgment."""
    logprobs = body["choices"][0].get("logprobs") or {}
    content = logprobs.get("content")
    if not content:
        return Judgment(score=None, weight=0.0, error="the judge returned no logprobs; it cannot be scored (use a model/server with logprobs)")
    pairs = [(entry["token"], entry["logprob"]) for entry in (content[0].get("top_logprobs") or [])]
    if not pairs:
        pairs = [(content[0]["token"], content[0]["logprob"])]
    return weighted_score(pairs, settings)


class OpenAIJudge:
    """Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama), with bounded concurrency.

    Retries with exponential backoff on 429, 5xx, timeouts and dropped connections are
    the ``openai`` client's own (``max_retries``); an item that still fails is recorded
    as an error and the rest go on.
    """

    def __init__(
        self,
        model: str = "gpt-4.1-mini",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        concurrency: int = 16,
        timeout: float = 30.0,
        max_retries: int = 4,
        settings: ScoringSettings = ScoringSettings(),
        cache: JudgmentCache | None = None,
    ):
        if not api_key:
            raise JudgeConfigurationError(
                "no API key for the OpenAI-compatible judge: set OPENAI_API_KEY (or the judge resource's api_key); "
                "local servers accept any non-empty value"
            )
        if concurrency < 1:
            raise JudgeConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        self.model = model
        self.settings = settings
        self.cache = cache
        self.concurrency = concurrency
        self.calls = 0
        self._client_args = {"api_key": api_key, "base_url": base_url, "timeout": timeout, "max_retries": max_retries}

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIJudge(model={self.model!r}, base_url={self._client_args['base_url']!r})"

    async def _score_one(self, client, semaphore: asyncio.Semaphore, prompt: str) -> Judgment:
        import openai

        async with semaphore:
            self.calls += 1
            try:
                # The client's generic ``post`` keeps its retries, backoff and error types but
                # skips the typed request transform and response models, which are most of its
                # CPU per call; the JSON body is read directly.
                content = await client.post(
                    "/chat/completions",
                    cast_to=bytes,
                    body={
                        "model": self.model,
                        "messages": [{"role": "user", "content": prompt}],
                        "max_tokens": self.settings.max_tokens,
                        "temperature": self.settings.temperature,
                        "logprobs": True,
                        "top_logprobs": self.settings.top_logprobs,
                    },
                )
                body = json.loads(content)
            except openai.APIError as err:
                return Judgment(score=None, weight=0.0, error=f"{type(err).__name__}: {str(err)[:200]}")
            except ValueError as err:  # not JSON at all
                return Judgment(score=None, weight=0.0, error=f"malformed response: {str(err)[:200]}")
        try:
            return judgment_from_body(body, self.settings)
        except (AttributeError, IndexError, KeyError, TypeError) as err:
            return Judgment(score=None, weight=0.0, error=f"malformed response: missing {err}")

    async def ascore(self, prompts: Sequence[str]) -> list[Judgment]:
        import openai

        results: list[Judgment | None] = [None] * len(prompts)
        pending: list[int] = []
        keys = [cache_key(self.model, p, self.settings) for p in prompts]
        for index, key in enumerate(keys):
            cached = self.cache.get(key) if self.cache else None
            if cached is not None:
                results[index] = cached
            else:
                pending.append(index)
        if pending:
            semaphore = asyncio.Semaphore(self.concurrency)
            async with openai.AsyncOpenAI(**self._client_args) as client:

                async def run(index: int) -> None:
                    judgment = await self._score_one(client, semaphore, prompts[index])
                    results[index] = judgment
                    if self.cache is not None:
                        self.cache.put(keys[index], judgment)  # as each finishes: a crash loses nothing done

                await asyncio.gather(*(run(i) for i in pending))
        return [r for r in results if r is not None]

    def score(self, prompts: Sequence[str]) -> list[Judgment]:
        return asyncio.run(self.ascore(prompts))
