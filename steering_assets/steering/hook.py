"""Steering vectors added to the residual stream at one decoder layer, through a forward hook.

One ``SteeringVectors`` module holds K vectors (one per persona) as a single ``[K, d]``
parameter; each example in a batch picks its own row through ``persona_index``. With
K = 1 and an all-zero index this is the ordinary single steering vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steering_assets.steering.errors import LayerOutOfRangeError

STEERING_ATTRIBUTE = "persona_steering"


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder-layer list of a causal LM (Llama, Qwen, Gemma, Mistral, GPT-2 style)."""
    candidates = []
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    for owner in (decoder, getattr(model, "model", None), getattr(model, "transformer", None), model):
        if owner is None:
            continue
        for name in ("layers", "h", "blocks"):
            layers = getattr(owner, name, None)
            if isinstance(layers, nn.ModuleList) and len(layers):
                return layers
        candidates.append(type(owner).__name__)
    raise ValueError(f"could not find the decoder layers of {type(model).__name__} (looked in {candidates})")


def check_layer(model: nn.Module, layer: int) -> int:
    count = len(decoder_layers(model))
    if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < count:
        raise LayerOutOfRangeError(
            f"layer {layer!r} is outside the model: {type(model).__name__} has {count} decoder layers, "
            f"so the layer must be 0-{count - 1}"
        )
    return layer


def default_layer(model: nn.Module) -> int:
    """The middle layer: persona directions are most linear there in published probing work."""
    return len(decoder_layers(model)) // 2


def hidden_size(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text_config.hidden_size)


class SteeringVectors(nn.Module):
    """K trainable vectors; the forward hook adds ``coefficient * vectors[persona_index]``."""

    def __init__(self, n_vectors: int, hidden: int, dtype: torch.dtype = torch.float32, device: Any = None):
        super().__init__()
        self.vectors = nn.Parameter(torch.zeros(n_vectors, hidden, dtype=dtype, device=device))
        self.coefficient = 1.0
        # Per-example row of `vectors`; None means row 0 for every example.
        self.persona_index: torch.Tensor | None = None

    def set_persona_index(self, persona_index: torch.Tensor | None) -> None:
        self.persona_index = persona_index

    def offsets(self, batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        if self.persona_index is None:
            rows = self.vectors[:1].expand(batch, -1)
        else:
            if self.persona_index.shape[0] != batch:
                raise ValueError(f"persona_index has {self.persona_index.shape[0]} entries for a batch of {batch}")
            rows = self.vectors.index_select(0, self.persona_index.to(self.vectors.device))
        return (self.coefficient * rows).to(device=device, dtype=dtype)[:, None, :]

    def hook(self, module: nn.Module, inputs: tuple, output: Any) -> Any:
        # Decoder layers return a Tensor in transformers 5, a tuple (hidden, ...) in older versions.
        if isinstance(output, tuple):
            hidden = output[0]
            return (hidden + self.offsets(hidden.shape[0], hidden.dtype, hidden.device),) + tuple(output[1:])
        return output + self.offsets(output.shape[0], output.dtype, output.device)


@dataclass
class SteeringHandle:
    """An attached steering module; ``remove()`` restores the exact base model."""

    model: nn.Module
    layer: int
    steering: SteeringVectors
    _hook: Any

    def remove(self) -> None:
        self._hook.remove()
        if getattr(self.model, STEERING_ATTRIBUTE, None) is self.steering:
            delattr(self.model, STEERING_ATTRIBUTE)

    def __enter__(self) -> "SteeringHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def attach_steering(model: nn.Module, layer: int, n_vectors: int = 1, vectors: torch.Tensor | None = None) -> SteeringHandle:
    """Register K steering vectors on ``model`` at the output of decoder layer ``layer``.

    The module is registered as a submodule of the model so an optimiser built from
    ``model.parameters()`` sees it, and the hook is prepended so that the hidden states
    transformers returns (collected by its own hooks) already include the steering.
    """
    check_layer(model, layer)
    if getattr(model, STEERING_ATTRIBUTE, None) is not None:
        raise RuntimeError("model already has a steering module attached; remove it first")
    parameter = next(model.parameters())
    steering = SteeringVectors(n_vectors, hidden_size(model), dtype=torch.float32, device=parameter.device)
    if vectors is not None:
        if tuple(vectors.shape) != tuple(steering.vectors.shape):
            raise ValueError(
                f"steering vectors have shape {tuple(vectors.shape)}, the model needs {tuple(steering.vectors.shape)} "
                f"(K x hidden size {hidden_size(model)})"
            )
        with torch.no_grad():
            steering.vectors.copy_(vectors.to(steering.vectors))
    model.add_module(STEERING_ATTRIBUTE, steering)
    handle = decoder_layers(model)[layer].register_forward_hook(steering.hook, prepend=True)
    return SteeringHandle(model, layer, steering, handle)


def freeze(model: nn.Module) -> nn.Module:
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
