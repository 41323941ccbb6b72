"""Difference-of-means vectors from two sets of conversations, with the pooling said out loud.

``mean(positive activations) - mean(negative activations)`` at the output of decoder block
``layer`` (the layer convention, docs/steering.md#layers), the classic activation-addition / CAA recipe. Two
poolings of a conversation's residual stream:

- ``"reply_mean"``: the mean over the assistant reply's tokens (the tokens steering training
  computes its loss on): what ``persona_activation_vector`` stores;
- ``"last_prompt_token"``: the last token of the prompt rendered with the generation prompt
  (the conversation before its reply): what steering-vectors (``read_token_index=-1``) and repeng
  read, so vectors compared with theirs must use it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

POOLINGS = ("reply_mean", "last_prompt_token")


def last_prompt_token_hidden(model: Any, tokenizer: Any, conversations: Sequence[list[dict[str, str]]], layer: int,
                             batch_size: int = 16, model_name: str = "the target model") -> np.ndarray:
    """``[n, d]``: block ``layer``'s output at the last token of each conversation's prompt.

    The prompt is every turn before the final assistant reply (all turns when the last one is
    not the assistant's), rendered with ``add_generation_prompt=True``: the position whose next
    token would start the reply.
    """
    from steering_assets.models.hooks import check_layer, input_device
    from steering_assets.models.loading import padded_batches
    from steering_assets.models.residual import block_outputs

    check_layer(model, layer)
    prompts = [c[:-1] if c and c[-1]["role"] == "assistant" else c for c in conversations]
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    device = input_device(model)
    rows = []
    with torch.no_grad(), padded_batches(tokenizer, "right", model_name):
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            hidden = block_outputs(model, [layer], **batch)[layer]
            last = batch["attention_mask"].sum(1) - 1
            rows.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)].float().cpu().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, model.config.hidden_size), dtype=np.float32)


def difference_of_means(model: Any, tokenizer: Any, positives: Sequence[list[dict[str, str]]],
                        negatives: Sequence[list[dict[str, str]]], layer: int, pooling: str = "reply_mean",
                        batch_size: int = 16, model_name: str = "the target model") -> np.ndarray:
    """``[d]`` float32: mean pooled activation of ``positives`` minus that of ``negatives`` at block ``layer``.

    Raises ValueError for an unknown ``pooling`` or an empty side.
    """
    from steering_assets.steering.evaluation import assistant_mean_hidden

    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
    if not positives or not negatives:
        raise ValueError(f"a difference of means needs conversations on both sides (got {len(positives)} and {len(negatives)})")
    read = assistant_mean_hidden if pooling == "reply_mean" else last_prompt_token_hidden
    pos = read(model, tokenizer, positives, layer, batch_size, model_name=model_name)
    neg = read(model, tokenizer, negatives, layer, batch_size, model_name=model_name)
    return (pos.mean(0) - neg.mean(0)).astype(np.float32)
