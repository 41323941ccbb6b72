"""Batched generation backends for chat conversations: the local model (left-padded, seeded sampling) and an
OpenAI-compatible chat-completions server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from steering_assets.core.artifacts import fingerprint

# assistant-axis samples its rollouts at temperature 0.7, top-p 0.9, up to 512 new tokens.
DEFAULT_TEMPERATURE = 0.7


DEFAULT_TOP_P = 0.9


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

        from steering_assets.models.hooks import input_device
        from steering_assets.models.loading import padded_batches

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
