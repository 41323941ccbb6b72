"""Steering-vector files: safetensors plus a JSON config, and the ``.pt`` layout other code loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from steering_assets.models.errors import VectorShapeError
from steering_assets.models.hooks import decoder_layers, hidden_size
from steering_assets.steering.config import CONFIG_FILE, VECTOR_FILE

TENSOR_KEY = "steering_vector"


def write_vector(vector: torch.Tensor, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({TENSOR_KEY: vector.detach().float().cpu().contiguous()}, str(path))


def write_interop(vector: torch.Tensor, path: Path) -> None:
    """``{"steering_vector": tensor}`` as a plain ``.pt`` file, the layout persona-steering code loads."""
    torch.save({TENSOR_KEY: vector.detach().float().cpu().clone()}, path)


def read_vector(folder: Path) -> tuple[torch.Tensor, dict[str, Any]]:
    from safetensors.torch import load_file

    tensors = load_file(str(Path(folder) / VECTOR_FILE))
    if TENSOR_KEY not in tensors:
        raise VectorShapeError(f"{folder / VECTOR_FILE}: no {TENSOR_KEY!r} tensor (found {sorted(tensors)})")
    return tensors[TENSOR_KEY], json.loads((Path(folder) / CONFIG_FILE).read_text())


def read_interop(path: Path) -> torch.Tensor:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or TENSOR_KEY not in payload:
        raise VectorShapeError(f"{path}: expected a dict with a {TENSOR_KEY!r} tensor")
    return payload[TENSOR_KEY]


def check_fits(vector: torch.Tensor, layer: int, model: torch.nn.Module, source: str) -> None:
    """Refuse a vector whose size or layer does not match ``model``, naming both."""
    size = hidden_size(model)
    if vector.ndim != 1 or vector.shape[0] != size:
        raise VectorShapeError(
            f"{source}: vector has shape {tuple(vector.shape)}, but {type(model).__name__} has hidden size {size}; "
            "it was trained for another model"
        )
    count = len(decoder_layers(model))
    if not 0 <= layer < count:
        raise VectorShapeError(f"{source}: vector is for layer {layer}, but the model has {count} layers (0-{count - 1})")


def load_into(folder: Path, model: torch.nn.Module):
    """Read a vector artifact and attach it to ``model`` at its layer; returns the SteeringHandle."""
    from steering_assets.models.hooks import attach_steering

    vector, config = read_vector(folder)
    check_fits(vector, int(config["layer"]), model, str(Path(folder) / VECTOR_FILE))
    return attach_steering(model, int(config["layer"]), 1, vector[None])
