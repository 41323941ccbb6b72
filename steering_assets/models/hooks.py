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

from steering_assets.core.errors import InputError
from steering_assets.models.errors import LayerOutOfRangeError

STEERING_ATTRIBUTE = "persona_steering"


class DecoderLayersNotFoundError(InputError, ValueError):
    """A model whose decoder blocks cannot be located."""


# Where causal LMs keep their decoder blocks, relative to the model or its base model:
# Llama/Mistral/Qwen/Gemma/Phi-3/OLMo (``model.layers``), GPT-2 (``transformer.h``), GPT-NeoX
# (``gpt_neox.layers``), multimodal wrappers such as Gemma3ForConditionalGeneration
# (``model.language_model.layers``), MPT/Falcon-style ``blocks``.
_LAYER_ATTRIBUTES = ("layers", "h", "blocks")


def _text_layer_count(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(text_config, name, None)
        if isinstance(value, int):
            return value
    return None


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM, in order: block L is layer L of the convention in docs/steering.md#layers.

    Looked up, in order, on ``model.get_decoder()``, ``model.base_model``, ``model.model``,
    ``model.model.language_model``, ``model.language_model``, ``model.transformer`` and the model
    itself, under the attribute names ``layers``, ``h`` and ``blocks``; a ``ModuleList`` whose
    length is the config's ``num_hidden_layers`` is preferred when several exist.

    Raises ``DecoderLayersNotFoundError`` naming the model class and every place looked in.
    """
    owners: list[tuple[str, nn.Module]] = []
    if hasattr(model, "get_decoder"):
        try:
            owners.append(("get_decoder()", model.get_decoder()))
        except (AttributeError, NotImplementedError, TypeError):
            pass
    inner = getattr(model, "model", None)
    for path, owner in (
        ("base_model", getattr(model, "base_model", None)),
        ("model", inner),
        ("model.language_model", getattr(inner, "language_model", None)),
        ("language_model", getattr(model, "language_model", None)),
        ("transformer", getattr(model, "transformer", None)),
        ("(the model itself)", model),
    ):
        owners.append((path, owner))
    expected = _text_layer_count(model)
    looked: list[str] = []
    candidates: list[nn.ModuleList] = []
    for path, owner in owners:
        if not isinstance(owner, nn.Module):
            continue
        for name in _LAYER_ATTRIBUTES:
            looked.append(f"{path}.{name} ({type(owner).__name__})")
            layers = getattr(owner, name, None)
            if isinstance(layers, nn.ModuleList) and len(layers):
                if expected is None or len(layers) == expected:
                    return layers
                candidates.append(layers)
    if candidates:
        # A config whose layer count disagrees (extra MTP layers, a renamed field): the first list found.
        return candidates[0]
    raise DecoderLayersNotFoundError(
        f"could not find the decoder layers of {type(model).__name__}: looked for a non-empty nn.ModuleList at "
        f"{', '.join(dict.fromkeys(looked))}. Steering, activation vectors and hidden-state features need the "
        "list of decoder blocks; this architecture keeps them elsewhere."
    )


def layer_device(model: nn.Module, layer: int) -> torch.device:
    """The device holding decoder block ``layer`` (blocks of a sharded model live on different GPUs)."""
    block = decoder_layers(model)[layer]
    for tensor in block.parameters():
        return tensor.device
    for tensor in block.buffers():
        return tensor.device
    return input_device(model)


def input_device(model: nn.Module) -> torch.device:
    """Where ``input_ids`` go: the device of the input embeddings (the first shard of a sharded model)."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embeddings, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight.device
    return next(model.parameters()).device


def n_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


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
    transformers returns (collected by its own hooks) already include the steering. The
    vectors live on the device of block ``layer``.
    """
    check_layer(model, layer)
    if getattr(model, STEERING_ATTRIBUTE, None) is not None:
        raise RuntimeError("model already has a steering module attached; remove it first")
    # On the device of the steered block, so a model sharded over GPUs never copies the vectors per forward.
    steering = SteeringVectors(n_vectors, hidden_size(model), dtype=torch.float32, device=layer_device(model, layer))
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
