"""Activation capping evaluated beside addition with the steering evaluation's judge and ratings.

Ways of answering the same prompts, all greedy (so "unchanged" means bit for bit):

- ``unsteered``: the model as it is;
- ``capped``: the capping plan applied at its layers (``steering_assets.models.capping``);
- ``addition``: the unit axis added at the plan's middle layer, at each of ``addition_factors`` typical
  residual-stream norms (the units of the judged steering evaluation), pushing toward the assistant.

Prompts that elicit role-play: the role's own instruction as the system turn, then a question;
and multi-turn drift prompts: the same, after one of the role's kept replies already in the
conversation, then a second question. Every reply is rated as the judged steering evaluation
rates its generations (``steering_assets.steering.ratings``, AxBench's three 0-2 ratings, one
``judge.score`` call for all of them): the concept is the role, so capping works when the capped
replies' concept rating falls (closer to the default assistant) while the instruction and fluency
ratings hold; a degenerate reply (a loop, empty, a leaked template prompt) gets fluency 0, as
there. A reply's ``assistant_score`` is AxBench's harmonic mean with the concept turned round,
``H(2 - concept, instruction, fluency)``: high when it answers, fluently, as the default assistant.
On neutral text (the default assistant's replies) the cost is the perplexity ratio capped /
unsteered, and neutral prompts are answered capped and not: a reply whose generation capped no
token must be unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from steering_assets.steering.ratings import CRITERIA, RATING_TOP, Ratings, harmonic_mean

UNSTEERED, CAPPED, ADDITION = "unsteered", "capped", "addition"
KINDS = ("role-play", "multi-turn")


@dataclass(frozen=True)
class CappingEvalSettings:
    questions_per_role: int = 3
    neutral_prompts: int = 4
    neutral_rows: int = 64  # default replies the perplexity (and the addition's residual norm) is measured on
    max_new_tokens: int = 48
    addition_factors: tuple[float, ...] = (0.125, 0.25, 0.5)
    # The bound on neutral text: capped perplexity / unsteered perplexity must stay below this.
    max_perplexity_ratio: float = 1.05

    def __post_init__(self) -> None:
        if not self.addition_factors or any(not math.isfinite(f) or f <= 0 for f in self.addition_factors):
            raise ValueError(f"addition_factors must be positive numbers, got {list(self.addition_factors)}")

    def methods(self) -> list[str]:
        """Every way of answering, as labels: unsteered, capped, addition@f for each factor."""
        return [UNSTEERED, CAPPED, *(f"{ADDITION}@{f:g}" for f in self.addition_factors)]


@dataclass
class Prompt:
    role: str
    kind: str  # "role-play" or "multi-turn"
    instruction: str
    question: str
    messages: list[dict[str, str]]

    @property
    def persona(self) -> str:
        """What the concept judge is told the role is (as the judged steering evaluation tells it)."""
        return f"{self.role.replace('_', ' ')}: {self.instruction}"


@dataclass
class CappingEvaluation:
    replies: dict[str, list[str]]  # method label -> reply per prompt
    ratings: dict[str, list[Ratings]]  # method label -> the three 0-2 ratings per prompt (fluency 0 when degenerate)
    degenerate: dict[str, list[str | None]]  # method label -> why a reply is degenerate text, per prompt
    capped_positions: list[int]  # per prompt, positions the capped generation capped
    neutral: list[dict[str, Any]] = field(default_factory=list)  # per neutral prompt: replies, capped positions, equal
    perplexity: dict[str, float] = field(default_factory=dict)  # "unsteered", "capped"

    def table(self, prompts: Sequence[Prompt], kind: str | None = None) -> list[dict[str, Any]]:
        """One row per method over ``prompts`` of ``kind`` (all: None): mean concept, instruction, fluency,
        assistant score, how many were rated, item errors and degenerate replies (NaN where nothing was rated)."""
        rows = []
        for method, ratings in self.ratings.items():
            chosen = [i for i, p in enumerate(prompts) if kind in (None, p.kind)]
            rated = [ratings[i] for i in chosen if ratings[i].ok]

            def mean(values: list[float]) -> float:
                return float(np.mean(values)) if values else math.nan

            rows.append({"method": method, **{c: mean([getattr(r, c) for r in rated]) for c in CRITERIA},
                         "assistant_score": mean([assistant_score(r) for r in rated]), "rated": len(rated),
                         "item_errors": len(chosen) - len(rated),
                         "degenerate": sum(1 for i in chosen if self.degenerate[method][i])})
        return rows


def assistant_score(rating: Ratings) -> float:
    """``H(2 - concept, instruction, fluency)``: AxBench's harmonic mean with the concept turned round (0-2)."""
    return harmonic_mean([RATING_TOP - rating.concept, rating.instruction, rating.fluency])


def drift_prompts(role: str, instruction: str, rows: Sequence[dict[str, Any]], count: int) -> list[Prompt]:
    """``count`` role-play prompts from the role's questions and as many multi-turn ones (a kept reply, then the next question).

    ``rows``: the role's kept replies as ``{"question", "messages"}`` (messages without the system turn).
    """
    questions = list(dict.fromkeys(r["question"] for r in rows))
    prompts = []
    for question in questions[:count]:
        prompts.append(Prompt(role, "role-play", instruction, question,
                              [{"role": "system", "content": instruction}, {"role": "user", "content": question}]))
    for index, question in enumerate(questions[1:count + 1]):
        earlier = next(r for r in rows if r["question"] == questions[index])
        prompts.append(Prompt(role, "multi-turn", instruction, question,
                              [{"role": "system", "content": instruction}, *earlier["messages"], {"role": "user", "content": question}]))
    return prompts


def render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The generation prompt; a template without a system role gets the instruction before the first user turn."""
    from steering_assets.models.generation import supports_system_role
    from steering_assets.persona_space.role_vectors import in_context

    if messages and messages[0]["role"] == "system" and not supports_system_role(tokenizer):
        messages = in_context(messages[1:], messages[0]["content"], system_role=False)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def greedy_replies(model: Any, tokenizer: Any, texts: Sequence[str], max_new_tokens: int, model_name: str,
                   batch_size: int = 8, capping: Any = None) -> tuple[list[str], list[int]]:
    """Greedy replies to ``texts`` (rendered prompts), left-padded batches of ``batch_size``; with a ``capping`` handle
    attached, the positions it capped in each row (its pad positions included, so "0" is conservative), else zeros."""
    import torch

    from steering_assets.models.hooks import input_device
    from steering_assets.models.loading import padded_batches

    replies, capped = [], []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start:start + batch_size])
        with padded_batches(tokenizer, "left", model_name) as pad_id:
            batch = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(input_device(model))
        if capping is not None:
            capping.reset_counts()
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id)
        replies += [r.strip() for r in tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)]
        rows = capping.capped_by_row if capping is not None else None
        capped += [int(x) for x in rows] if rows is not None else [0] * len(chunk)
    return replies, capped


def evaluate_capping(model: Any, tokenizer: Any, plan: Any, unit_axis_middle: np.ndarray, residual_norm: float,
                     prompts: Sequence[Prompt], neutral_questions: Sequence[str], neutral_text: Sequence[list[dict[str, str]]],
                     judge: Any, settings: CappingEvalSettings = CappingEvalSettings(), model_name: str = "the target model",
                     log: Callable[[str], None] = print, leaks: Sequence[str] = ()) -> CappingEvaluation:
    """Replies of every method to every prompt, the judge's ratings, and the cost on neutral text.

    The role and neutral prompts go through the same batches unsteered and capped, so a neutral reply is
    compared with one generated beside the same rows; the capping hook counts capped positions per row
    (pad positions included, so "none capped" is exact). ``leaks``: texts whose appearance makes a reply
    degenerate (``judged_eval.degenerate``).
    """
    import torch

    from steering_assets.models.capping import attach_capping
    from steering_assets.models.hooks import attach_steering
    from steering_assets.steering.evaluation import assistant_perplexity
    from steering_assets.steering.judged_eval import degenerate

    texts = [render(tokenizer, p.messages) for p in prompts]
    neutral_texts = [render(tokenizer, [{"role": "user", "content": q}]) for q in neutral_questions]

    def generate(batch: Sequence[str], handle: Any = None) -> tuple[list[str], list[int]]:
        return greedy_replies(model, tokenizer, batch, settings.max_new_tokens, model_name, capping=handle)

    plain, _ = generate(texts + neutral_texts)
    with attach_capping(model, plan.caps()) as handle:
        capped, positions = generate(texts + neutral_texts, handle)
    replies = {UNSTEERED: plain[:len(texts)], CAPPED: capped[:len(texts)]}
    capped_positions = positions[:len(texts)]
    neutral = [{"question": question, "unsteered": plain[len(texts) + i], "capped": capped[len(texts) + i],
                "capped_positions": positions[len(texts) + i], "equal": plain[len(texts) + i] == capped[len(texts) + i]}
               for i, question in enumerate(neutral_questions)]
    for factor in settings.addition_factors:
        offset = torch.as_tensor(unit_axis_middle * factor * residual_norm, dtype=torch.float32)
        with attach_steering(model, plan.middle_layer, 1, offset[None]):
            replies[f"{ADDITION}@{factor:g}"] = generate(texts)[0]
    log(f"capping eval: {len(texts)} prompts answered {len(replies)} ways; the judge rates {len(texts) * len(replies)} replies")
    ratings = rate_replies(judge, prompts, replies)
    flaws = {m: [degenerate(reply, leaks) for reply in replies[m]] for m in replies}
    ratings = {m: [replace(r, fluency=0.0) if why and r.ok else r for r, why in zip(ratings[m], flaws[m])] for m in ratings}
    perplexity = {"unsteered": assistant_perplexity(model, tokenizer, neutral_text, model_name=model_name)}
    with attach_capping(model, plan.caps()):
        perplexity["capped"] = assistant_perplexity(model, tokenizer, neutral_text, model_name=model_name)
    return CappingEvaluation(replies, ratings, flaws, capped_positions, neutral, perplexity)


def rate_replies(judge: Any, prompts: Sequence[Prompt], replies: dict[str, list[str]]) -> dict[str, list[Ratings]]:
    """Each method's replies rated 0-2 for the role (concept), the question (instruction) and fluency, as the judged
    steering evaluation rates a generation (``steering.judged_eval.rate_item_sets``), in one ``judge.score`` call."""
    from steering_assets.steering.judged_eval import rate_item_sets
    from steering_assets.steering.ratings import rating_items

    jobs = [(method, i) for method in replies for i in range(len(prompts))]
    ratings, _ = rate_item_sets(judge, [rating_items(prompts[i].persona, prompts[i].question, replies[method][i]) for method, i in jobs])
    out: dict[str, list[Ratings]] = {method: [] for method in replies}
    for (method, _), rating in zip(jobs, ratings):
        out[method].append(rating)
    return out
