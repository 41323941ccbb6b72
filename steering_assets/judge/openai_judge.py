"""LLM-judge scoring: a probability-weighted 0-100 score from the next token's logprobs.

One chat completion per item with ``max_tokens=1, temperature=0, logprobs=true,
top_logprobs=20``. The score is the probability-weighted mean of the integer tokens
among the top logprobs, and there is no score when their total probability is below 0.25.
A judge that answers ``REFUSAL`` (or a prefix of it) is recorded as a refusal.

Number scale. Hosted judges (OpenAI's tokenizers, Llama-3) hold one token per integer
0-100, so the first token is the whole answer. Judges whose tokenizer spells numbers digit
by digit (Qwen, Gemma, Mistral, Llama-2) answer "85" as "8", "5": reading that first token
as the score would give about 8. A setup probe ("reply with the number 85", three tokens)
tells the two apart; a digit-by-digit judge is asked for a 0-9 rating instead, one token,
and its score is the weighted mean digit x 100/9 (``scale_top=9``), or, when the 0-100
scale was demanded (``number_scale="0-100"``), it is refused before any work.

Every finished judgment (a score, never an error or an unscored answer) is cached by a hash
of (judge model, prompt, scoring settings) in a JSON-lines file that is appended and flushed
per judgment, so a crash loses nothing finished and a re-run only calls the judge for new,
changed, failed or unscored prompts. The cache and every report are strict JSON: a score is
always a finite number in 0-100.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from steering_assets.core.errors import InputError
from steering_assets.judge.logprobs import (
    REASONING_FIX,
    AnswerError,
    checked_logprob,
    describe_provider_error,
    describe_readings,
    number_value,
    provider_error,
    read_answer,
    starts_thinking,
)

REFUSAL_TOKENS = ("REF", "REFUSAL", "Ref", "refusal")
NUMBER_SCALES = ("auto", "0-100", "0-9")
# The setup probe: a judge that holds "85" as one token answers it in one token.
PROBE_PROMPT = "Reply with the number 85 and nothing else."
# Error codes (in a status or a body) that no retry can fix: the whole run stops at once.
# (403 alone is not enough: OpenRouter answers 403 for one input its moderation flagged.)
_FATAL_CODES = {"insufficient_quota", "billing_hard_limit_reached", "invalid_api_key", "account_deactivated",
                "access_terminated", "insufficient_credits", "unauthorized", "permission_denied",
                "unsupported_country_region_territory"}
_FATAL_STATUSES = {401, 402}
# String codes some routers put in a 200 body, and the HTTP status they stand for.
_CODE_STATUS = {"rate_limit_exceeded": 429, "insufficient_quota": 429, "server_error": 500, "service_unavailable": 503,
                "overloaded": 529, "timeout": 408, "invalid_api_key": 401, "unauthorized": 401, "permission_denied": 403,
                "insufficient_credits": 402}


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


def judgment_from_body(body: Any, settings: ScoringSettings) -> Judgment:
    """A Judgment from a chat-completions JSON body, in any layout ``read_answer`` knows; problems become errors."""
    try:
        answer = read_answer(body)
    except AnswerError as err:
        return failed(str(err))
    return weighted_score([(c.text, c.logprob) for c in answer.first.candidates], settings)


def _httpx_module():
    """The HTTP library the installed openai client is built on (httpx, or httpx2 from openai 3)."""
    import openai

    for cls in openai.DefaultAsyncHttpxClient.__mro__:
        root = cls.__module__.split(".")[0]
        if cls.__name__ == "AsyncClient" and root in ("httpx", "httpx2"):
            return importlib.import_module(root)
    raise ImportError("cannot tell which HTTP library the openai client uses")


def _error_status(error: dict) -> int | None:
    code = error.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    if isinstance(code, str) and code.isdigit() and 400 <= int(code) <= 599:
        return int(code)
    for name in (code, error.get("type")):
        if isinstance(name, str) and name in _CODE_STATUS:
            return _CODE_STATUS[name]
    return None


def _is_fatal(error: dict | None, status: int | None) -> bool:
    names = {str(error.get(k)) for k in ("code", "type")} if isinstance(error, dict) else set()
    return bool(names & _FATAL_CODES) or status in _FATAL_STATUSES


def provider_error_transport(inner: Any) -> Any:
    """An httpx transport that lets the openai client handle errors that routers report inside bodies.

    OpenRouter and similar routers answer HTTP 200 with an ``error`` object (at the top, or
    in the choice) when the upstream provider failed. Such an answer is given the status its
    code names (429, 502, ...), so the client's own retries, backoff and error types apply. A
    quota, credit or authentication error is marked ``x-should-retry: false`` whatever its
    status, so the client does not retry a 429 ``insufficient_quota``.
    """
    httpx = _httpx_module()

    class ProviderErrorTransport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request):
            response = await inner.handle_async_request(request)
            content = await response.aread()
            try:
                body = json.loads(content)
            except ValueError:
                body = None
            error = provider_error(body)
            status = response.status_code
            headers = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding")]
            if error is not None:
                named = _error_status(error)
                if status == 200 and named is not None:
                    status = named
                    content = json.dumps({"error": error}).encode()
                if _is_fatal(error, status):
                    headers.append(("x-should-retry", "false"))
            return httpx.Response(status, headers=headers, content=content, request=request, extensions=response.extensions)

        async def aclose(self):
            await inner.aclose()

    return ProviderErrorTransport()


@dataclass
class ProbeResult:
    kind: str  # "whole" (one token per number) or "digits" (one digit a token)
    tokens: list[str] = field(default_factory=list)
    # Which field the probe's token text came from (`bytes`, `token`) and why, and the spellings undone.
    text_source: str = ""


class OpenAIJudge:
    """Any OpenAI-compatible endpoint (OpenAI, OpenRouter, vLLM, llama.cpp, Ollama), with bounded concurrency.

    Retries with exponential backoff on 429, 5xx, timeouts and dropped connections are the
    ``openai`` client's own (``max_retries``), also for errors a router reports in a 200 body;
    an item that still fails is recorded as an error naming the provider's message and code,
    and the rest go on. A quota, credit or authentication error stops the whole run at once
    (``JudgeStoppedError``) without retries and without marking any item.
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
        number_scale: str = "auto",
    ):
        if not api_key:
            raise JudgeConfigurationError(
                "no API key for the OpenAI-compatible judge: set OPENAI_API_KEY (or the judge resource's api_key); "
                "local servers accept any non-empty value"
            )
        if concurrency < 1:
            raise JudgeConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        if number_scale not in NUMBER_SCALES:
            raise JudgeConfigurationError(f"number_scale must be one of {NUMBER_SCALES}, got {number_scale!r}")
        self.model = model
        self.base_settings = settings
        self.cache = cache
        self.concurrency = concurrency
        self.number_scale = number_scale
        self.calls = 0  # scoring requests (not counting the setup probe)
        self.probe_calls = 0
        self.probe: ProbeResult | None = None
        self._scale_top: int | None = 9 if number_scale == "0-9" else None
        self._client_args = {"api_key": api_key, "base_url": base_url, "timeout": timeout, "max_retries": max_retries}

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIJudge(model={self.model!r}, base_url={self._client_args['base_url']!r})"

    @property
    def where(self) -> str:
        return f"judge {self.model!r} at {self._client_args['base_url'] or 'api.openai.com'}"

    @property
    def settings(self) -> ScoringSettings:
        return ScoringSettings(**{**asdict(self.base_settings), "scale_top": self._scale_top or self.base_settings.scale_top})

    def _client(self):
        import openai

        httpx = _httpx_module()
        limits = httpx.Limits(max_connections=max(100, 2 * self.concurrency), max_keepalive_connections=max(20, self.concurrency))
        transport = provider_error_transport(httpx.AsyncHTTPTransport(limits=limits))
        http_client = openai.DefaultAsyncHttpxClient(transport=transport, timeout=self._client_args["timeout"])
        return openai.AsyncOpenAI(**self._client_args, http_client=http_client)

    async def _post(self, client, prompt: str, max_tokens: int) -> Any:
        # The client's generic ``post`` keeps its retries, backoff and error types but skips the
        # typed request transform and response models, which are most of its CPU per call; the
        # JSON body is read directly (Python's json reads the NaN and Infinity some servers send).
        content = await client.post(
            "/chat/completions",
            cast_to=bytes,
            body={
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": self.base_settings.temperature,
                "logprobs": True,
                "top_logprobs": self.base_settings.top_logprobs,
            },
        )
        return json.loads(content)

    def _stopped(self, err) -> JudgeStoppedError:
        body = err.body if isinstance(getattr(err, "body", None), dict) else {}
        detail = describe_provider_error(body) if body else str(err)[:300]
        return JudgeStoppedError(
            f"the {self.where} refused the run (HTTP {getattr(err, 'status_code', '?')}): {detail}. Nothing was retried "
            "and no item was marked as failed; fix the account (quota, credits, key) and run again"
        )

    def _api_error(self, err) -> str:
        import openai

        if isinstance(err, openai.APITimeoutError):
            return f"timed out after {self._client_args['timeout']}s and {self._client_args['max_retries']} retries"
        if isinstance(err, openai.APIStatusError):
            body = err.body if isinstance(err.body, dict) else {}
            detail = describe_provider_error(body) if body else f"provider error {err.status_code}: {str(err)[:200]}"
            retried = err.status_code in (408, 409, 429) or err.status_code >= 500
            return detail + (f" (after {self._client_args['max_retries']} retries)" if retried else "")
        return f"{type(err).__name__}: {str(err)[:200]}"

    def _fatal(self, err) -> bool:
        import openai

        if not isinstance(err, openai.APIStatusError):
            return False
        return _is_fatal(err.body if isinstance(err.body, dict) else None, err.status_code)

    async def _score_one(self, client, semaphore: asyncio.Semaphore, stop: asyncio.Event, prompt: str,
                         settings: ScoringSettings) -> Judgment | None:
        import openai

        async with semaphore:
            if stop.is_set():  # the provider refused the run: no further request
                return None
            self.calls += 1
            try:
                body = await self._post(client, prompt, self.base_settings.max_tokens)
            except openai.APIError as err:
                if self._fatal(err):
                    stop.set()
                    raise self._stopped(err) from None
                return failed(self._api_error(err))
            except ValueError as err:  # not JSON at all
                return failed(f"malformed response: {str(err)[:200]}")
        return judgment_from_body(body, settings)

    async def _probe(self, client) -> ProbeResult:
        """Ask for the number 85 in up to three tokens: one token "85" or digit tokens "8", "5"."""
        import openai

        self.probe_calls += 1
        try:
            body = await self._post(client, PROBE_PROMPT, 3)
        except openai.APITimeoutError:
            raise JudgeConfigurationError(
                f"the setup probe of the {self.where} timed out after {self._client_args['timeout']}s and "
                f"{self._client_args['max_retries']} retries: check that the server is up and serves this model, or "
                "raise the judge resource's timeout for a slow server. Nothing was judged"
            ) from None
        except openai.APIError as err:
            if self._fatal(err):
                raise self._stopped(err) from None
            raise JudgeConfigurationError(f"the setup probe of the {self.where} failed: {self._api_error(err).rstrip('.')}; "
                                          "nothing was judged") from None
        except ValueError as err:
            raise JudgeConfigurationError(f"the {self.where} answered the setup probe with a body that is not JSON "
                                          f"({str(err)[:120]})") from None
        try:
            answer = read_answer(body)
        except AnswerError as err:
            fix = REASONING_FIX if err.kind == "reasoning" else str(err)
            raise JudgeConfigurationError(f"the {self.where} cannot be scored from logprobs: {fix}") from None
        readings = [p.top for p in answer.positions if p.chosen is not None or p.candidates]
        tokens = [r.text for r in readings]
        source = describe_readings(readings)
        first = number_value(tokens[0]) if tokens else None
        second = number_value(tokens[1]) if len(tokens) > 1 else None
        if first is not None and first >= 10:
            return ProbeResult("whole", tokens, source)
        if first is not None and second is not None:
            return ProbeResult("digits", tokens, source)
        # Name the token that is not a number and both fields it came in: a server quirk shows there.
        unread = readings[0] if first is None else readings[1] if len(readings) > 1 else None
        which = f"; the {'first' if first is None else 'second'} token is not a number ({unread.detail()})" if unread else ""
        raise JudgeConfigurationError(
            f"the {self.where} answered the setup probe ({PROBE_PROMPT!r}) with the tokens {tokens!r}, not with the "
            f"number as its first token{which}, so its scores cannot be read from the first token's logprobs; use an "
            "instruction-following judge model"
        )

    async def ascale_top(self) -> int:
        """The top of the scale this judge answers on: 100, or 9 for a digit-by-digit judge (probed once, cached)."""
        if self._scale_top is not None:
            return self._scale_top
        key = cache_key(self.model, PROBE_PROMPT, ScoringSettings(max_tokens=3))
        stored = self.cache.get_probe(key) if self.cache is not None else None
        if stored is not None:
            self.probe = ProbeResult(stored["kind"], list(stored.get("tokens", [])), stored.get("text_source", ""))
        else:
            async with self._client() as client:
                self.probe = await self._probe(client)
            if self.cache is not None:
                self.cache.put_probe(key, asdict(self.probe))
        if self.probe.kind == "digits" and self.number_scale == "0-100":
            raise JudgeConfigurationError(
                f"the {self.where} spells numbers one digit a token (it answered 85 as {self.probe.tokens[:2]!r}), so a "
                "0-100 score read from its first token would be about a tenth of the real one. Set the judge's "
                "number_scale to 'auto' or '0-9' (it is then asked for a 0-9 rating, mapped to 0-100), or use a judge "
                "whose tokenizer holds whole numbers"
            )
        self._scale_top = 9 if self.probe.kind == "digits" else 100
        return self._scale_top

    def scale_top(self) -> int:
        return asyncio.run(self.ascale_top())

    async def ascore(self, prompts: Sequence[str | JudgeItem], scale_top: int | None = None) -> list[Judgment]:
        """One Judgment per prompt; raises ``JudgeStoppedError`` (after cancelling the rest) on a quota or auth error.

        ``scale_top``: the prompts ask for a rating 0..scale_top themselves (e.g. 0-2, single digits in every
        tokenizer), so the number-scale probe is not needed; None uses the judge's own 0-100 or 0-9 scale.
        """
        prompts = [prompt_text(p) for p in prompts]
        if scale_top is None:
            await self.ascale_top()
            settings = self.settings
        else:
            settings = ScoringSettings(**{**asdict(self.base_settings), "scale_top": scale_top})
        results: list[Judgment | None] = [None] * len(prompts)
        keys = [cache_key(self.model, p, settings) for p in prompts]
        pending = []
        for index, key in enumerate(keys):
            cached = self.cache.get(key) if self.cache else None
            if cached is not None:
                results[index] = cached
            else:
                pending.append(index)
        if pending:
            semaphore, stop = asyncio.Semaphore(self.concurrency), asyncio.Event()
            async with self._client() as client:

                async def run(index: int) -> None:
                    judgment = await self._score_one(client, semaphore, stop, prompts[index], settings)
                    if judgment is None:
                        return
                    results[index] = judgment
                    if self.cache is not None:
                        self.cache.put(keys[index], judgment)  # as each finishes: a crash loses nothing done

                tasks = [asyncio.create_task(run(i)) for i in pending]
                try:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                    for task in done:
                        if task.exception() is not None:
                            raise task.exception()
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
        return [r for r in results if r is not None]

    def score(self, prompts: Sequence[str | JudgeItem], scale_top: int | None = None) -> list[Judgment]:
        return asyncio.run(self.ascore(prompts, scale_top))
