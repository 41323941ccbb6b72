"""Layer specifications: ``"0-5"``, ``"2,5,10"``, ``"0-2,10,15-17"``."""

from __future__ import annotations

import re

from steering_assets.core.errors import InputError

_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


class LayerSpecError(InputError, ValueError):
    """A layer specification that cannot be parsed or does not fit the model."""


def parse_layers(spec: str | int | list[int], n_layers: int | None = None) -> list[int]:
    """Sorted, de-duplicated layer indices; every problem names the offending part.

    Ranges are inclusive (``"15-17"`` is 15, 16, 17). With ``n_layers`` every index must
    be below it.
    """
    if isinstance(spec, bool):
        raise LayerSpecError(f"layer spec {spec!r} is not a layer list")
    if isinstance(spec, int):
        parts, text = [str(spec)], str(spec)
    elif isinstance(spec, list):
        parts, text = [str(x) for x in spec], ",".join(str(x) for x in spec)
    else:
        text = str(spec).strip()
        parts = [p.strip() for p in text.split(",")] if text else []
    if not parts:
        raise LayerSpecError("layer spec is empty; expected e.g. '0-5', '2,5,10' or '0-2,10,15-17'")
    layers: set[int] = set()
    for part in parts:
        match = _PART.match(part)
        if not match:
            raise LayerSpecError(
                f"layer spec {text!r}: part {part!r} is not a layer number or a range like '3-7'"
            )
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        if end < start:
            raise LayerSpecError(f"layer spec {text!r}: range {part!r} is reversed; write '{end}-{start}'")
        layers.update(range(start, end + 1))
    if n_layers is not None:
        outside = sorted(layer for layer in layers if layer >= n_layers)
        if outside:
            raise LayerSpecError(
                f"layer spec {text!r}: layer(s) {outside} out of range; the model has {n_layers} layers (0-{n_layers - 1})"
            )
    return sorted(layers)


def format_layers(layers: list[int]) -> str:
    """The shortest spec for a list of layers: ``[0, 1, 2, 5]`` -> ``"0-2,5"`` (inverse of ``parse_layers``)."""
    parts: list[str] = []
    ordered = sorted(set(int(layer) for layer in layers))
    start = previous = None
    for layer in ordered + [None]:
        if start is not None and (layer is None or layer != previous + 1):
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = None
        if layer is not None and start is None:
            start = layer
        previous = layer
    return ",".join(parts)
