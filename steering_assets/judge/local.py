"""The offline judge and base-model completions, on a local causal LM.

``LocalJudge`` computes the same probability-weighted 0-100 score as the OpenAI-compatible
judge, from the next-token logprobs of a local model, and shares its cache format.
``complete_scenarios`` continues scenarios with a base model (no chat template).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

from steering_assets.judge.judgments import (
    NUMBER_SCALES,
    JudgeConfigurationError,
    JudgeItem,
    Judgment,
    JudgmentCache,
    ScoringSettings,
    cache_key,
    prompt_text,
    weighted_score,
)


def single_token_numbers(tokenizer: Any, top: int) -> list[int]:
    """The integers 0..top that the tokenizer holds as one token (bare, or with a byte-level or SentencePiece space)."""
    vocab = tokenizer.get_vocab()
    return [n for n in range(top + 1) if any(f"{marker}{n}" in vocab for marker in ("", "Ġ", "▁"))]


class LocalJudge:
    """Scores prompts with a local model: chat-formatted prompt, top-k next-token logprobs, weighted score.

    The number scale follows the tokenizer: one token per integer 0-100 gives the 0-100 scale;
    a tokenizer that spells numbers digit by digit (Qwen, Gemma, Mistral, Llama-2) is asked for
    a 0-9 rating (``number_scale="auto"`` or ``"0-9"``), or refused with ``"0-100"``.
    """

    def __init__(self, model: Any, tokenizer: Any, model_name: str, *, settings: ScoringSettings = ScoringSettings(),
                 cache: JudgmentCache | None = None, batch_size: int = 16, number_scale: str = "auto"):
        from steering_assets.models.loading import padding_token_id

        if number_scale not in NUMBER_SCALES:
            raise JudgeConfigurationError(f"number_scale must be one of {NUMBER_SCALES}, got {number_scale!r}")
        # Batches are left-padded: refuse a tokenizer with neither pad nor EOS before any scoring.
        padding_token_id(tokenizer, model_name, "PERSONA_JUDGE_LOCAL_MODEL")
        self.model, self.tokenizer = model, tokenizer
        self.model_name = model_name
        self.base_settings = settings
        self.cache = cache
        self.batch_size = batch_size
        self.number_scale = number_scale
        self.calls = 0
        self._scale_top: int | None = None

    def scale_top(self) -> int:
        """100 when every integer 0-100 is one token, 9 for a digit-by-digit tokenizer; refuses what cannot be scored."""
        if self._scale_top is None:
            whole = len(single_token_numbers(self.tokenizer, 100)) == 101
            digits = len(single_token_numbers(self.tokenizer, 9)) == 10
            if self.number_scale == "0-100" and not whole:
                raise JudgeConfigurationError(
                    f"the local judge {self.model_name!r} does not hold every number 0-100 as one token (its tokenizer "
                    "spells numbers digit by digit), so a 0-100 score read from the first token would be about a tenth "
                    "of the real one; set number_scale to 'auto' or '0-9', or use another judge model")
            if not digits:
                raise JudgeConfigurationError(
                    f"the local judge {self.model_name!r} has no single token for each digit 0-9, so no score can be "
                    "read from its next-token logprobs; use another judge model")
            self._scale_top = 100 if whole and self.number_scale != "0-9" else 9
        return self._scale_top

    @property
    def settings(self) -> ScoringSettings:
        return ScoringSettings(**{**asdict(self.base_settings), "scale_top": self.scale_top()})

    def _render(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
        return prompt

    def _score_batch(self, prompts: Sequence[str], settings: ScoringSettings) -> list[Judgment]:
        import torch

        from steering_assets.models.hooks import input_device
        from steering_assets.models.loading import padded_batches

        # Left padding (EOS when there is no pad token): the next token is at the last position of every row.
        with padded_batches(self.tokenizer, "left", self.model_name, "PERSONA_JUDGE_LOCAL_MODEL"):
            batch = self.tokenizer([self._render(p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
        device = input_device(self.model)
        with torch.no_grad():
            logits = self.model(**{k: v.to(device) for k, v in batch.items()}).logits[:, -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        top = logprobs.topk(settings.top_logprobs, dim=-1)
        judgments = []
        for values, indices in zip(top.values.tolist(), top.indices.tolist()):
            tokens = self.tokenizer.convert_ids_to_tokens(indices)
            # Byte-level BPE marks a leading space with 'Ġ'; the judge's answer is the bare number.
            pairs = [(self.tokenizer.convert_tokens_to_string([t]), v) for t, v in zip(tokens, values)]
            # weighted_score turns a NaN logit into that item's error, never a NaN score.
            judgments.append(weighted_score(pairs, settings))
        self.calls += len(prompts)
        return judgments

    def score(self, prompts: Sequence[str | JudgeItem], scale_top: int | None = None) -> list[Judgment]:
        """One Judgment per prompt (a ``JudgeItem`` is read as its rubric prompt). ``scale_top``: the prompts ask
        for a rating 0..scale_top (e.g. 2) themselves, instead of the judge's own 0-100 or 0-9 number scale."""
        prompts = [prompt_text(p) for p in prompts]
        settings = self.settings if scale_top is None else ScoringSettings(**{**asdict(self.base_settings), "scale_top": scale_top})
        keys = [cache_key(self.model_name, p, settings) for p in prompts]
        results: list[Judgment | None] = [self.cache.get(k) if self.cache else None for k in keys]
        pending = [i for i, r in enumerate(results) if r is None]
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            for index, judgment in zip(chunk, self._score_batch([prompts[i] for i in chunk], settings)):
                results[index] = judgment
                if self.cache is not None:
                    self.cache.put(keys[index], judgment)
        return [r for r in results if r is not None]


def complete_scenarios(model: Any, tokenizer: Any, scenarios: Sequence[str], *, max_new_tokens: int = 50,
                       do_sample: bool = False, temperature: float = 0.8, top_p: float = 0.95, seed: int = 0,
                       batch_size: int = 16, model_name: str = "the base model") -> list[str]:
    """Continue each scenario as plain text (a base model, no chat template), in batches.

    Batches are left-padded, with EOS when the tokenizer has no pad token (Llama and Mistral
    base models); a tokenizer with neither fails before any generation, naming ``model_name``.
    """
    import torch

    from steering_assets.models.hooks import input_device
    from steering_assets.models.loading import padded_batches

    device = input_device(model)
    outputs: list[str] = []
    with padded_batches(tokenizer, "left", model_name) as pad_id:
        for start in range(0, len(scenarios), batch_size):
            chunk = list(scenarios[start : start + batch_size])
            batch = tokenizer(chunk, return_tensors="pt", padding=True).to(device)
            torch.manual_seed(seed + start)
            options = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
            generated = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=pad_id, **options)
            outputs += [text.strip() for text in tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)]
    return outputs


# The instruction comes first so the item to rate sits right before the answer. Changing the text
# changes every cached judgment's key, so vetting re-scores.
SCENARIO_INSTRUCTION = (
    "Rate how strongly the scenario invites a response that shows the trait, from 0 (it invites the opposite) "
    "to 100 (it clearly invites the trait). Answer with a single number, or REFUSAL if you cannot answer."
)
RESPONSE_INSTRUCTION = (
    "Rate how strongly the completion expresses the trait, from 0 (it expresses the opposite) to 100 (it clearly "
    "expresses the trait). Answer with a single number, or REFUSAL if you cannot answer."
)


def _instruction(instruction: str, scale_top: int) -> str:
    if scale_top == 100:
        return instruction
    # A digit-by-digit judge rates on 0-9, one token; the score is mapped back to 0-100.
    return instruction.replace("to 100 (", f"to {scale_top} (").replace("a single number", "a single digit")


def _scenario_block(scenario: str, system_prompt: str | None) -> str:
    return f"System prompt: {system_prompt}\nScenario: {scenario}" if system_prompt else f"Scenario: {scenario}"


def scenario_prompt(definition: str, scenario: str, system_prompt: str | None = None, scale_top: int = 100) -> str:
    """Stage 0: does this scenario (with its system prompt, if any) set up the trait? 0 = its opposite, top = the trait."""
    return f"{_instruction(SCENARIO_INSTRUCTION, scale_top)}\n\nTrait: {definition}\n\n{_scenario_block(scenario, system_prompt)}"


def response_prompt(definition: str, scenario: str, completion: str, system_prompt: str | None = None,
                    scale_top: int = 100) -> str:
    """Stage 2: does this completion express the trait?"""
    return (f"{_instruction(RESPONSE_INSTRUCTION, scale_top)}\n\nTrait: {definition}\n\n"
            f"{_scenario_block(scenario, system_prompt)}\nCompletion: {completion}")
