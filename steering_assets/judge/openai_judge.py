"""The judge behind an OpenAI-compatible server: a probability-weighted 0-100 score from the next token's
top_logprobs (the shared types and the cache are in ``judgments``).

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
import importlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from steering_assets.judge.judgments import (
    NUMBER_SCALES,
    JudgeConfigurationError,
    JudgeItem,
    JudgeStoppedError,
    Judgment,
    JudgmentCache,
    ScoringSettings,
    cache_key,
    failed,
    prompt_text,
    weighted_score,
)
from steering_assets.judge.logprobs import (
    REASONING_FIX,
    AnswerError,
    describe_provider_error,
    describe_readings,
    number_value,
    provider_error,
    read_answer,
)

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
