"""Reference implementations: the plain, one-at-a-time way a research script computes what the product
batches. Tests compare the product with them (same numbers, same text) and benchmarks/ time both."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from steering_assets.features.prefixes import SentenceTokens, _as_tokens
from steering_assets.personas.budget import _require_chat_template
from steering_assets.steering.judged_eval import Setting


def prefix_hidden_states_one_by_one(model: Any, sentences: Sequence[SentenceTokens]) -> list[np.ndarray]:
    """The reference way: one forward pass per fragment, keeping every block's output at its last position."""
    import torch

    from steering_assets.models.hooks import input_device
    from steering_assets.models.residual import all_block_outputs

    device = input_device(model)
    results = []
    with torch.no_grad():
        for item in (_as_tokens(s) for s in sentences):
            per_prefix = []
            for end in range(item.start + 1, len(item.ids) + 1):
                stacked = all_block_outputs(model, input_ids=torch.tensor([item.ids[:end]], device=device))
                per_prefix.append(stacked[:, 0, -1].float().cpu().numpy())
            results.append(np.stack(per_prefix, axis=1))
    return results


def chat_token_lengths_one_by_one(tokenizer: Any, conversations: Sequence[list[dict[str, str]]]) -> list[int]:
    """The reference way: one ``apply_chat_template(tokenize=True)`` call per conversation."""
    _require_chat_template(tokenizer)
    lengths = []
    for conversation in conversations:
        encoded = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)
        lengths.append(len(encoded["input_ids"]))
    return lengths


def generate_per_setting(model: Any, tokenizer: Any, prompts_by_setting: dict[Setting, list[str]], layer: int,
                         vector_by_setting: dict[Setting, Any], max_new_tokens: int,
                         model_name: str = "the target model") -> dict[Setting, list[str]]:
    """The plain way: one greedy ``generate`` call per setting over its prompts, with one steering vector attached.

    The reference ``generate_batched`` is checked against (the same text) and benchmarked against.
    """
    import torch

    from steering_assets.models.hooks import attach_steering, input_device
    from steering_assets.models.loading import padded_batches

    device = input_device(model)
    outputs: dict[Setting, list[str]] = {}
    with torch.no_grad():
        for setting, prompts in prompts_by_setting.items():
            with attach_steering(model, layer, 1, vector_by_setting[setting][None].float()):
                with padded_batches(tokenizer, "left", model_name) as pad_id:
                    batch = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                    generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                                               temperature=None, top_p=None, top_k=None)
            outputs[setting] = [r.strip() for r in tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1]:],
                                                                            skip_special_tokens=True)]
    return outputs


def every_position_logits(model: Any) -> Any:
    """``model`` behind a forward without ``logits_to_keep``: the likelihood judge then computes every position's
    logits and softmax, as a per-sequence scoring script does."""
    import torch

    class EveryPositionLogits(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any = None) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    return EveryPositionLogits(model)
