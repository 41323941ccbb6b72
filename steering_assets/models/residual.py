"""The residual stream at the output of decoder blocks: the one reader every stage uses.

docs/steering.md#layers fixes the layer convention: layer L is the residual stream at the output of decoder
block L (0-based), before the final norm, for steering, activation vectors, hidden-state
features and SAE inputs alike. ``output_hidden_states`` does not give that at the last layer
(its last entry is the final norm's output, while steering adds before the norm), so every
reader captures block outputs with forward hooks instead. The hooks are appended after the
steering hook (which is prepended), so the states of a steered model include the steering,
exactly as the next block sees them.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import torch

from steering_assets.models.hooks import check_layer, decoder_layers


class _EnoughLayers(Exception):
    """Raised by the hook of the last wanted block: nothing after it is needed."""


def block_outputs(model: torch.nn.Module, layers: Iterable[int], *, stop_early: bool = True, **inputs: Any) -> dict[int, torch.Tensor]:
    """Run ``model(**inputs)`` and return ``{layer: output of decoder block layer}``, each ``[batch, seq, d]``.

    With ``stop_early`` the forward pass ends right after the last wanted block: the blocks
    above it and the LM head (a ``d x vocab`` matmul per token) are never computed, which is
    where most of the time goes for a middle layer of a large model. Tensors stay on the
    device of their block and in the model's dtype. Raises ``LayerOutOfRangeError`` for a
    layer the model does not have.
    """
    blocks = decoder_layers(model)
    wanted = sorted({check_layer(model, int(layer)) for layer in layers})
    if not wanted:
        return {}
    captured: dict[int, torch.Tensor] = {}
    last = wanted[-1]

    def make_hook(layer: int):
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            # Decoder blocks return a Tensor in transformers 5 and a tuple (hidden, ...) in older code.
            captured[layer] = output[0] if isinstance(output, tuple) else output
            if stop_early and layer == last:
                raise _EnoughLayers

        return hook

    handles = [blocks[layer].register_forward_hook(make_hook(layer)) for layer in wanted]
    inputs.setdefault("use_cache", False)
    try:
        model(**inputs)
    except _EnoughLayers:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [layer for layer in wanted if layer not in captured]
    if missing:
        raise RuntimeError(f"decoder block(s) {missing} of {type(model).__name__} did not run in the forward pass")
    return captured


def all_block_outputs(model: torch.nn.Module, **inputs: Any) -> torch.Tensor:
    """Every block's output stacked as ``[n_layers, batch, seq, d]`` (row L = block L, the last one included)."""
    count = len(decoder_layers(model))
    captured = block_outputs(model, range(count), **inputs)
    device = captured[0].device
    return torch.stack([captured[layer].to(device) for layer in range(count)])


def reply_block_outputs(model: torch.nn.Module, tokenizer: Any, conversations: Sequence[list[dict[str, str]]],
                        layers: Iterable[int], *, batch_size: int = 16, max_length: int = 1024,
                        model_name: str = "the target model") -> Iterator[tuple[dict[int, torch.Tensor], torch.Tensor]]:
    """Right-padded batches of ``conversations`` through the model: per batch, ``{layer: block output [b, s, d]}``
    (``block_outputs``) and the reply-token mask ``[b, s]`` (bool, on the device of the last wanted block).

    Reply tokens are found as training finds them (``assistant_mask.reply_token_masks``); conversations are cut
    at ``max_length`` tokens. Raises before any forward pass when the tokenizer has no pad (or EOS) token.
    Gradients are whatever the caller's mode is: call it under ``torch.no_grad()``.
    """
    from steering_assets.models.assistant_mask import reply_batches, reply_token_masks
    from steering_assets.models.hooks import input_device
    from steering_assets.models.loading import padding_token_id

    wanted = list(layers)
    pad_id = padding_token_id(tokenizer, model_name)
    ids, masks = reply_token_masks(tokenizer, conversations, max_length)
    for input_ids, attention, reply in reply_batches(ids, masks, batch_size, pad_id, input_device(model)):
        captured = block_outputs(model, wanted, input_ids=input_ids, attention_mask=attention)
        yield captured, reply.to(captured[max(wanted)].device)
