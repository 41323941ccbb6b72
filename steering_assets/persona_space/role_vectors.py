"""Role vectors: the mean residual stream over a role's replies at every layer (assistant-axis's stage 4).

For each reply, the residual stream at the output of every decoder block (the layer convention,
docs/steering.md#layers) is averaged over the reply's tokens; the role vector is the mean of
those per-reply means, ``[n_layers, d]``, as assistant-axis's ``pipeline/4_vectors.py`` does
(the mean of per-conversation activations). The replies are read in the context they were
generated in: the role's instruction as the system turn (or, for a template without a system
role, before the question in the user turn, as the rollout writers put it), then the question.

Roles keep their fully role-playing replies (score >= 3 by default, assistant-axis: score 3);
the default assistant keeps every reply (assistant-axis: "mean of ALL activations").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from steering_assets.core.errors import InputError

# assistant-axis's vector types: "pos_3" for a role's score-3 mean, "mean" for the default assistant.
ROLE_TYPE = "pos_3"
DEFAULT_TYPE = "mean"


class RoleVectorError(InputError, ValueError):
    """A role vector that cannot be computed or used: too few replies, the wrong shape, another model."""


@dataclass
class ReplyActivations:
    """Running sums of per-reply mean activations: ``sums`` ``[n_layers, d]`` float64 over ``n_replies`` replies
    holding ``n_tokens`` reply tokens; ``skipped`` replies had no reply token (an empty completion)."""

    sums: np.ndarray
    n_replies: int = 0
    n_tokens: int = 0
    skipped: int = 0

    def mean(self) -> np.ndarray:
        """``[n_layers, d]`` float32: the mean of the per-reply means."""
        if self.n_replies == 0:
            raise RoleVectorError("no reply with at least one token to average")
        return (self.sums / self.n_replies).astype(np.float32)


def in_context(messages: list[dict[str, str]], instruction: str | None, system_role: bool) -> list[dict[str, str]]:
    """``messages`` (the turns without the persona) with ``instruction`` put back where the writer put it."""
    if not instruction or not instruction.strip():
        return [dict(m) for m in messages]
    if system_role:
        return [{"role": "system", "content": instruction}] + [dict(m) for m in messages]
    turns = [dict(m) for m in messages]
    for turn in turns:
        if turn["role"] == "user":
            turn["content"] = f"{instruction}\n\n{turn['content']}"
            break
    return turns


def reply_activations(model: Any, tokenizer: Any, conversations: Sequence[list[dict[str, str]]], *,
                      batch_size: int = 8, max_length: int = 1024, model_name: str = "the target model",
                      progress: Callable[[int, int], None] | None = None) -> ReplyActivations:
    """Per-reply mean activation of every block, summed over ``conversations`` (their assistant turns' tokens).

    One forward pass per batch of ``batch_size`` conversations, all blocks captured by hooks; the
    LM head is never computed. ``progress(done, total)`` is called after each batch. Raises
    ``FloatingPointError`` on a non-finite activation.
    """
    import torch

    from steering_assets.models.hooks import hidden_size, n_layers
    from steering_assets.models.residual import reply_block_outputs

    count = n_layers(model)
    result = ReplyActivations(np.zeros((count, hidden_size(model)), dtype=np.float64))
    done = 0
    with torch.no_grad():
        for captured, reply in reply_block_outputs(model, tokenizer, conversations, range(count), batch_size=batch_size,
                                                   max_length=max_length, model_name=model_name):
            mask = reply.float()
            tokens = mask.sum(1)
            keep = tokens > 0
            for layer in range(count):
                hidden = captured[layer].float()
                # A sharded model's blocks live on different devices.
                here = mask.to(hidden.device)
                means = (hidden * here.unsqueeze(-1)).sum(1) / here.sum(1).clamp(min=1).unsqueeze(-1)
                result.sums[layer] += means[keep.to(hidden.device)].double().sum(0).cpu().numpy()
            result.n_replies += int(keep.sum())
            result.n_tokens += int(tokens.sum())
            result.skipped += int((~keep).sum())
            done += reply.shape[0]
            if progress is not None:
                progress(done, len(conversations))
    if not np.isfinite(result.sums).all():
        raise FloatingPointError("non-finite residual-stream activations; the model or the inputs are broken")
    return result


def check_role_vector(vector: np.ndarray, shape: tuple[int, int], where: str) -> np.ndarray:
    """``vector`` as float32 if it is ``shape`` (``[n_layers, d]``) and finite; else ``RoleVectorError`` naming ``where``."""
    array = np.asarray(vector)
    if array.shape != tuple(shape):
        raise RoleVectorError(f"{where}: role vector has shape {tuple(array.shape)}, expected {tuple(shape)} "
                              "([n_layers, hidden size] of the model the other vectors were computed with)")
    if not np.isfinite(array).all():
        raise RoleVectorError(f"{where}: role vector holds NaN or infinite values")
    return array.astype(np.float32, copy=False)
