"""Activation capping: the residual stream's projection on a direction clamped at a threshold, per layer.

At each capped layer L, with a unit direction ``v`` and a threshold ``tau``, block L's output
``h`` (every position, the prompt's and the generated tokens') becomes

    h - max(0, h . v - tau) v

so the part of ``h`` orthogonal to ``v`` is untouched and only the projection above ``tau`` is
removed (Lu et al. 2026, "The Assistant Axis"; assistant-axis's ``intervention_type="capping"``).
A token whose projection is at or below ``tau`` passes through bit for bit: when no token of a
forward pass is above the threshold the hook returns the block's output object itself.

Like the steering hook (``steering_assets.models.hooks``) the capping hooks are prepended, so
``output_hidden_states`` and our block readers see the capped stream, as the next block does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from steering_assets.core.errors import InputError
from steering_assets.models.hooks import check_layer, decoder_layers, hidden_size, layer_device


class CappingError(InputError, ValueError):
    """A capping direction or threshold that does not fit the model."""


@dataclass(frozen=True)
class Cap:
    """One capped layer: ``direction`` ``[d]`` (normalised when attached), threshold ``tau`` in residual-stream units."""

    layer: int
    direction: torch.Tensor
    tau: float


def cap_hidden(hidden: torch.Tensor, unit: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``hidden`` ``[b, s, d]`` with its projection on ``unit`` capped at ``tau``, and the positions capped per row ``[b]``.

    The projection is computed in float32 for half-precision models. Returns ``hidden`` itself
    (not a copy) when no position is above ``tau``.
    """
    projection = hidden.float() @ unit.float()
    excess = (projection - tau).clamp(min=0.0)
    per_row = (excess > 0).sum(-1)
    if not bool(per_row.any()):
        return hidden, per_row
    return hidden - (excess.unsqueeze(-1) * unit.float()).to(hidden.dtype), per_row


@dataclass
class CappingHandle:
    """Attached capping hooks; counts the positions each layer saw and capped, and the positions capped in each batch
    row over every layer (``capped_by_row``, ``[b]``, since ``reset_counts``); ``remove()`` restores the model."""

    caps: tuple[Cap, ...]
    seen: dict[int, int] = field(default_factory=dict)
    capped: dict[int, int] = field(default_factory=dict)
    capped_by_row: torch.Tensor | None = None
    _hooks: list = field(default_factory=list)

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def reset_counts(self) -> None:
        self.seen = {cap.layer: 0 for cap in self.caps}
        self.capped = {cap.layer: 0 for cap in self.caps}
        self.capped_by_row = None

    @property
    def total_capped(self) -> int:
        return sum(self.capped.values())

    def __enter__(self) -> "CappingHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def attach_capping(model: torch.nn.Module, caps: Sequence[Cap]) -> CappingHandle:
    """Register one capping hook per layer of ``caps`` (prepended, so every reader sees the capped stream).

    Raises ``CappingError`` for a direction of the wrong width, a zero or non-finite direction or
    threshold, or a layer given twice; ``LayerOutOfRangeError`` for a layer the model lacks.
    """
    width = hidden_size(model)
    layers = [cap.layer for cap in caps]
    if len(set(layers)) != len(layers):
        raise CappingError(f"capping layers {layers}: a layer is given more than once")
    units = []
    for cap in caps:
        check_layer(model, cap.layer)
        direction = torch.as_tensor(cap.direction, dtype=torch.float32).flatten()
        if direction.numel() != width:
            raise CappingError(f"capping direction for layer {cap.layer} has {direction.numel()} entries; the model's hidden size is {width}")
        norm = float(direction.norm())
        if not norm > 0 or not torch.isfinite(direction).all() or not torch.isfinite(torch.tensor(float(cap.tau))):
            raise CappingError(f"capping layer {cap.layer}: the direction must be finite and non-zero and tau finite "
                               f"(norm {norm}, tau {cap.tau})")
        units.append((direction / norm).to(layer_device(model, cap.layer)))
    handle = CappingHandle(tuple(caps))
    handle.reset_counts()
    blocks = decoder_layers(model)
    for cap, unit in zip(caps, units):
        handle._hooks.append(blocks[cap.layer].register_forward_hook(_hook(handle, cap.layer, unit, float(cap.tau)), prepend=True))
    return handle


def _hook(handle: CappingHandle, layer: int, unit: torch.Tensor, tau: float):
    def hook(module: torch.nn.Module, inputs: tuple, output: Any) -> Any:
        # Decoder blocks return a Tensor in transformers 5, a tuple (hidden, ...) in older code.
        hidden = output[0] if isinstance(output, tuple) else output
        new, per_row = cap_hidden(hidden, unit.to(hidden.device), tau)
        handle.seen[layer] += hidden.shape[0] * hidden.shape[1]
        handle.capped[layer] += int(per_row.sum())
        per_row = per_row.cpu()
        if handle.capped_by_row is None or handle.capped_by_row.shape != per_row.shape:
            handle.capped_by_row = torch.zeros_like(per_row)
        handle.capped_by_row += per_row
        if new is hidden:
            return None  # unchanged: the block's own output goes on
        return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

    return hook
