"""An offline judge from a pretrained chat model's own likelihoods: no judge is trained, no server is needed.

Each criterion of a ``JudgeItem`` is a log-likelihood comparison under the chat model (the persona
model itself in the demo), in nats per answer token over the first ``max_answer_tokens`` tokens:

- concept: ``log p(answer | concept as system turn, question) - log p(answer | contrast, question)``.
  A reply that speaks as the persona is more likely when the model is told to be the persona than when
  it is told to be the contrast (the default assistant, or the trait's opposite). This is the
  likelihood-ratio reading of a persona that lm-eval-style loglikelihood evaluations use.
- instruction: ``log p(answer | question) - log p(answer | an unrelated question)``: how much the
  question explains the answer.
- fluency: the mean token log-likelihood given the question, times the share of the answer's word
  trigrams that are not repeats (a loop like "Aye, aye, aye" is likely to a model, so repetition is
  counted apart).
- scenario (does a vetting scenario set up the trait or its opposite?): how much more the scenario, as
  the user turn, makes the model say "I will answer as someone who is {trait}." rather than "... who is
  not {trait} at all.", less the same difference after a neutral request. Scoring the scenario text
  itself given the trait's definition fails: a negative scenario names the trait to forbid it ("no jokes
  at all"), and that is as likely under the definition as a positive one (40% agreement with the demo's
  known verdicts, against 18/20 (humorous) and 13/20 (optimistic) for this reading, ``notes/REAL_MODELS_NOTES.md``;
  on optimistic that is below a judge that passes every line, 17/20).

Each difference ``r`` becomes a 0-100 score ``100 * sigmoid((r - centre) / width)``, with the centres
and widths below (measured on SmolLM2-135M-Instruct's own replies, ``notes/REAL_MODELS_NOTES.md``), so
callers keep reading 0-100 scores (a role's 0-3 is ``score * 3 / 100``) and the judgment cache works
unchanged. What it cannot tell: anything the chat model itself cannot tell apart, e.g. a persona it has
never heard of, facts, or a trait it does not associate with its description; and it shares the persona
model's blind spots when it judges that model's own text. A real LLM judge
(``PERSONA_JUDGE_BACKEND=openai``) is the default for real runs.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from steering_assets.core.artifacts import fingerprint
from steering_assets.judge.judgments import JudgeConfigurationError, JudgeItem, Judgment, JudgmentCache, ScoringSettings

LIKELIHOOD_JUDGE_VERSION = 2
# A question no reply of the demo answers: the instruction criterion's contrast.
UNRELATED_QUESTION = "Name a colour."
# The scenario criterion's request without any set-up, and the two self-statements it compares.
NEUTRAL_REQUEST = "Answer my question."


def trait_statements(trait: str) -> tuple[str, str]:
    """The self-statements the scenario criterion compares: (sets up the trait, sets up its opposite)."""
    trait = trait.replace("_", " ").strip()
    return f"I will answer as someone who is {trait}.", f"I will answer as someone who is not {trait} at all."


@dataclass(frozen=True)
class Calibration:
    """``score = 100 * sigmoid((r - centre) / width)`` for a criterion's difference ``r`` (nats per token)."""

    centre: float
    width: float

    def score(self, value: float) -> float:
        z = (value - self.centre) / self.width
        return 100.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


# On SmolLM2's replies: role-prompted replies gain 0.15-0.45 nats a token under their role's instruction,
# default replies lose 0.05-0.2; so 0 is the midpoint, and 0.1 nats already reads as clearly in role.
CALIBRATIONS = {
    "concept": Calibration(centre=0.0, width=0.05),
    "instruction": Calibration(centre=0.05, width=0.05),
    # Plain replies average -0.7 to -1.6 nats a token, a pirate's readable slang about -2.1, broken word salad
    # ("a plant-free life-plant, a plant-life-plant") -3.2.
    "fluency": Calibration(centre=-2.8, width=0.3),
    # The demo's clean positive scenarios score -0.1 to +0.18, its negatives -0.41 to -0.01 (two traits).
    "scenario": Calibration(centre=-0.08, width=0.05),
}

_WORD = re.compile(r"\w+")


def distinct_trigram_share(text: str) -> float:
    """The share of word trigrams in ``text`` that are not repeats of an earlier one (1.0 for under 4 words)."""
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return len(set(grams)) / len(grams) if len(grams) > 1 else 1.0


class LikelihoodJudge:
    """Scores ``JudgeItem``s with a chat model's log-likelihoods (module docstring); same interface as the LLM judges.

    ``score(items)`` returns one 0-100 ``Judgment`` per item (``weight`` 1). A plain prompt string has no
    parts to read and is an item error naming what to pass instead. Results are cached in ``cache`` by
    the item's parts and the model, as the LLM judges cache theirs.
    """

    def __init__(self, model: Any, tokenizer: Any, model_name: str, *, cache: JudgmentCache | None = None,
                 batch_size: int = 16, max_answer_tokens: int = 64):
        from steering_assets.models.generation import supports_system_role
        from steering_assets.models.loading import padding_token_id

        if not getattr(tokenizer, "chat_template", None):
            raise JudgeConfigurationError(
                f"the likelihood judge {model_name!r} has no chat template: it conditions replies on a system turn, "
                "so it needs a chat (instruct) model")
        padding_token_id(tokenizer, model_name, "PERSONA_JUDGE_LOCAL_MODEL")
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self.cache, self.batch_size, self.max_answer_tokens = cache, batch_size, max_answer_tokens
        self.calls = 0  # answers scored by the model (cache hits not counted)
        self._system_role = supports_system_role(tokenizer)
        self._keeps_logits: bool | None = None  # whether the model's forward takes logits_to_keep (checked once)

    method = "likelihood ratio"

    def scale_top(self) -> int:
        return 100

    @property
    def settings(self) -> ScoringSettings:
        return ScoringSettings()

    def _key(self, item: JudgeItem) -> str:
        return fingerprint({"judge": "likelihood", "version": LIKELIHOOD_JUDGE_VERSION, "model": self.model_name,
                            "max_answer_tokens": self.max_answer_tokens, "criterion": item.criterion,
                            "answer": item.answer, "concept": item.concept, "contrast": item.contrast,
                            "question": item.question})

    def _messages(self, system: str, question: str) -> list[dict[str, str]]:
        if system and not self._system_role:
            return [{"role": "user", "content": f"{system}\n\n{question}".strip()}]
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]

    def _requests(self, item: JudgeItem) -> list[tuple[str, str, str]]:
        """The ``(system, question, answer)`` log-likelihoods the item's criterion combines (``_judgment``)."""
        if item.criterion == "concept":
            return [(item.concept, item.question, item.answer), (item.contrast, item.question, item.answer)]
        if item.criterion == "instruction":
            return [("", item.question, item.answer), ("", UNRELATED_QUESTION, item.answer)]
        if item.criterion == "scenario":
            # The scenario is the condition; the scored answers are the two self-statements.
            trait, opposite = trait_statements(item.concept)
            return [("", item.answer, trait), ("", item.answer, opposite),
                    ("", NEUTRAL_REQUEST, trait), ("", NEUTRAL_REQUEST, opposite)]
        return [("", item.question, item.answer)]

    def _mean_logprobs(self, requests: Sequence[tuple[str, str, str]]) -> list[float]:
        """Mean log-probability per answer token of each ``(system, question, answer)``, batched, right-padded."""
        import torch

        from steering_assets.models.hooks import input_device

        rows = []
        for system, question, answer in requests:
            prefix = self.tokenizer.apply_chat_template(self._messages(system, question), tokenize=False,
                                                        add_generation_prompt=True)
            prefix_ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
            answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"][: self.max_answer_tokens]
            rows.append((prefix_ids, answer_ids))
        device = input_device(self.model)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
        values: dict[int, float] = {}
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            width = max(len(rows[i][0]) + len(rows[i][1]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                sequence = rows[i][0] + rows[i][1]
                ids[row, : len(sequence)] = torch.tensor(sequence)
                mask[row, : len(sequence)] = 1
            # Position t predicts token t + 1: the answers are predicted from the shortest prefix's last token on,
            # so the vocabulary projection and its softmax skip every earlier (prompt) position.
            first = min(len(rows[i][0]) for i in chunk) - 1
            with torch.no_grad():
                logits = self._logits(ids.to(device), mask.to(device), first, width).float()
            logprobs = torch.log_softmax(logits, dim=-1)
            token_logprobs = logprobs.gather(-1, ids[:, first + 1:].to(logprobs.device).unsqueeze(-1)).squeeze(-1)
            for row, i in enumerate(chunk):
                prefix_ids, answer_ids = rows[i]
                if not answer_ids:
                    values[i] = math.nan
                    continue
                start = len(prefix_ids) - 1 - first
                values[i] = float(token_logprobs[row, start: start + len(answer_ids)].mean())
        self.calls += len(rows)
        return [values[i] for i in range(len(rows))]

    def _logits(self, ids: Any, mask: Any, first: int, width: int) -> Any:
        """``[b, width - 1 - first, vocab]``: the logits of positions ``first .. width - 2`` (what predicts tokens
        ``first + 1 ..``). transformers' ``logits_to_keep`` skips the rest; a model without it computes all and is sliced."""
        import inspect

        import torch

        if self._keeps_logits is None:
            self._keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
            if not self._keeps_logits:
                logging.getLogger(__name__).info(
                    f"{type(self.model).__name__} takes no logits_to_keep: the likelihood judge computes every position's logits")
        if self._keeps_logits:
            keep = torch.arange(first, width - 1, device=ids.device)
            return self.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
        return self.model(input_ids=ids, attention_mask=mask).logits[:, first:width - 1]

    def _judgment(self, item: JudgeItem, logprobs: list[float]) -> Judgment:
        if any(math.isnan(v) for v in logprobs):
            return Judgment(score=None, weight=0.0, error="the answer is empty: nothing to score")
        if item.criterion == "fluency":
            value = logprobs[0]
            score = CALIBRATIONS["fluency"].score(value) * distinct_trigram_share(item.answer)
        elif item.criterion == "scenario":
            # (trait - opposite) after the scenario, less (trait - opposite) after a neutral request.
            value = (logprobs[0] - logprobs[1]) - (logprobs[2] - logprobs[3])
            score = CALIBRATIONS["scenario"].score(value)
        else:
            value = logprobs[0] - logprobs[1]
            score = CALIBRATIONS[item.criterion].score(value)
        return Judgment(score=round(score, 6), weight=1.0, top_token=f"r={value:.4f}")

    def score(self, items: Sequence[JudgeItem | str], scale_top: int | None = None) -> list[Judgment]:
        """One Judgment per item, 0-100 whatever ``scale_top`` (callers map it to their scale, as for LLM judges)."""
        results: list[Judgment | None] = [None] * len(items)
        keys: dict[int, str] = {}
        requests: list[tuple[str, str, str]] = []
        owners: list[tuple[int, int]] = []  # (item index, number of conditions)
        for index, item in enumerate(items):
            if not isinstance(item, JudgeItem):
                results[index] = Judgment(score=None, weight=0.0, error=(
                    "the likelihood judge reads structured items (JudgeItem with criterion, answer, concept, question), "
                    "not a plain prompt; this caller only builds rubric prompts for LLM judges"))
                continue
            keys[index] = self._key(item)
            cached = self.cache.get(keys[index]) if self.cache is not None else None
            if cached is not None:
                results[index] = cached
                continue
            item_requests = self._requests(item)
            requests += item_requests
            owners.append((index, len(item_requests)))
        if requests:
            # One forward per distinct condition: the three criteria of a generation share "the answer given the
            # question" (fluency, the instruction's numerator and, against the default assistant, the concept's contrast).
            unique = list(dict.fromkeys(requests))
            values = dict(zip(unique, self._mean_logprobs(unique)))
            logprobs = [values[r] for r in requests]
            position = 0
            for index, count in owners:
                judgment = self._judgment(items[index], logprobs[position:position + count])
                position += count
                results[index] = judgment
                if self.cache is not None and judgment.ok:
                    self.cache.put(keys[index], judgment)
        return [r for r in results if r is not None]
