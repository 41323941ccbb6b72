"""The assistant axis: ``mean(default vectors) - mean(role vectors)`` per layer (assistant-axis's stage 5).

The axis points from role-playing toward the default assistant: a reply's activation projects
higher on it the more it sounds like the plain assistant. The means are taken streaming, one role
vector at a time (float64 running sums), so 275 roles of a 64-layer, 5120-wide model never need
to be in memory together.

Written in assistant-axis's layout (``pipeline/5_axis.py``): a ``torch.save`` dict
``{"axis", "default_mean", "role_mean", "n_default", "n_roles"}`` with ``[n_layers, d]``
float32 tensors, which their ``load_axis`` and our importer
(``steering_assets.steering.export.import_layer_stack``) both read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from steering_assets.persona_space.role_vectors import RoleVectorError, check_role_vector

AXIS_KEYS = ("axis", "default_mean", "role_mean", "n_default", "n_roles")


class AxisError(RoleVectorError):
    """An axis that cannot be computed (no default vector, no role) or a file that is not one."""


@dataclass
class AxisAccumulator:
    """Streaming sums of the default and role vectors; ``add`` one ``[n_layers, d]`` vector at a time."""

    shape: tuple[int, int] | None = None
    default_sum: np.ndarray | None = None
    role_sum: np.ndarray | None = None
    defaults: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    def add(self, name: str, vector: np.ndarray, is_default: bool, where: str = "") -> None:
        if self.shape is None:
            self.shape = tuple(np.shape(vector))
            self.default_sum = np.zeros(self.shape, dtype=np.float64)
            self.role_sum = np.zeros(self.shape, dtype=np.float64)
        vector = check_role_vector(vector, self.shape, where or name)
        if is_default:
            self.default_sum += vector
            self.defaults.append(name)
        else:
            self.role_sum += vector
            self.roles.append(name)

    def result(self) -> "AssistantAxis":
        if not self.defaults:
            raise AxisError("the assistant axis needs the default assistant's vector: materialise the role vector of "
                            "the 'default' partition. A data root gets that partition from a baseline file "
                            "(assistant-axis's responses/default.jsonl, persona-subspace's roles_240/responses/0_default.jsonl "
                            "or 1_default.jsonl; a persona-subspace tree without them, from the 'default' rows inside "
                            "its role files); an instructions root from roles/instructions/default.json")
        if not self.roles:
            raise AxisError("the assistant axis needs at least one role vector besides 'default'")
        default_mean = (self.default_sum / len(self.defaults)).astype(np.float32)
        role_mean = (self.role_sum / len(self.roles)).astype(np.float32)
        return AssistantAxis(default_mean - role_mean, default_mean, role_mean, len(self.defaults), len(self.roles))


@dataclass
class AssistantAxis:
    """``axis``, ``default_mean``, ``role_mean``: ``[n_layers, d]`` float32; the counts of vectors averaged."""

    axis: np.ndarray
    default_mean: np.ndarray
    role_mean: np.ndarray
    n_default: int
    n_roles: int

    def norms(self) -> np.ndarray:
        """``[n_layers]``: the axis's norm at each layer."""
        return np.linalg.norm(self.axis, axis=1)

    def unit(self, layer: int) -> np.ndarray:
        """``[d]``: the unit axis at ``layer``."""
        row = self.axis[layer]
        return row / max(float(np.linalg.norm(row)), 1e-12)

    def save(self, path: Path) -> None:
        import torch

        torch.save({"axis": torch.from_numpy(self.axis), "default_mean": torch.from_numpy(self.default_mean),
                    "role_mean": torch.from_numpy(self.role_mean), "n_default": int(self.n_default),
                    "n_roles": int(self.n_roles)}, path)


def compute_axis(vectors: Iterable[tuple[str, np.ndarray, bool]]) -> tuple[AssistantAxis, AxisAccumulator]:
    """The axis from ``(name, [n_layers, d] vector, is_default)`` items, read one at a time."""
    accumulator = AxisAccumulator()
    for name, vector, is_default in vectors:
        accumulator.add(name, vector, is_default)
    return accumulator.result(), accumulator


def load_axis_file(path: Path | str) -> AssistantAxis:
    """An axis file in assistant-axis's layout (ours or theirs); a bare ``[n_layers, d]`` tensor is read as the axis
    alone. Raises ``AxisError`` naming the file and what it holds."""
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, torch.Tensor):
        payload = {"axis": payload}
    if not isinstance(payload, dict) or not isinstance(payload.get("axis"), torch.Tensor) or payload["axis"].ndim != 2:
        raise AxisError(f"{path}: expected assistant-axis's axis file (a dict with an 'axis' [n_layers, d] tensor), found "
                        f"{sorted(payload) if isinstance(payload, dict) else type(payload).__name__}")
    axis = payload["axis"].float().numpy()
    zeros = np.zeros_like(axis)

    def array(key: str) -> np.ndarray:
        value = payload.get(key)
        return value.float().numpy() if isinstance(value, torch.Tensor) else zeros

    return AssistantAxis(axis, array("default_mean"), array("role_mean"), int(payload.get("n_default", 0)),
                         int(payload.get("n_roles", 0)))
