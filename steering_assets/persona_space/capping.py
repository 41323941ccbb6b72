"""Activation-capping configurations from the assistant axis, in assistant-axis's ``capping_config.pt`` layout.

The sign, stated once: the capped direction at layer L is ``v = -axis[L] / |axis[L]|``, which points
from the default assistant toward role-playing, and its threshold is ``tau = -q``, with ``q`` the
``percentile`` quantile (0.25 in the published experiments, "p0.25") of the default assistant's
reply tokens' projections on the unit axis at L. Capping ``h . v`` at ``tau``
(``steering_assets.models.capping``) is then a floor on the projection on the axis: ``h . axis_unit
>= q``; a token already that assistant-like is untouched.

The file (``torch.save``), as assistant-axis's ``load_capping_config`` / ``build_capping_steerer``
read it::

    {"vectors": {"layer_21": {"layer": 21, "vector": [d] float32}, ...},
     "experiments": [{"id": "layers_21:25-p0.25",
                      "interventions": [{"vector": "layer_21", "cap": tau_21}, ...]}],
     "n_layers": 30, "hidden_size": 576, "model": "..."}

The last three keys are ours (their loader ignores them); ``read_capping_config`` checks them
when present, and always checks every layer and vector width against the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from steering_assets.core.errors import InputError

# assistant-axis's published experiments cap at 72-84% (Qwen3-32B, 46-54 of 64) and 70-90% (Llama-3.3-70B,
# 56-72 of 80) of the depth; the default range is the first.
DEFAULT_DEPTH = (0.72, 0.84)
DEFAULT_PERCENTILE = 0.25


class CappingConfigError(InputError, ValueError):
    """A capping configuration that does not fit the model, or an experiment it lacks."""


@dataclass(frozen=True)
class CappingPlan:
    """Layers, their capped directions ``[n, d]`` (unit, ``-axis``) and thresholds ``taus``, and the percentile used."""

    experiment_id: str
    layers: tuple[int, ...]
    directions: np.ndarray
    taus: tuple[float, ...]
    percentile: float | None = None

    def caps(self) -> list:
        import torch

        from steering_assets.models.capping import Cap

        return [Cap(layer, torch.from_numpy(np.ascontiguousarray(direction)), tau)
                for layer, direction, tau in zip(self.layers, self.directions, self.taus)]

    @property
    def middle_layer(self) -> int:
        """The middle capped layer: where drift is read and the addition baseline adds, by default."""
        return self.layers[len(self.layers) // 2]

    def floor(self, layer: int) -> float | None:
        """The floor on the unit-axis projection at ``layer`` (``-tau``), or None when the layer is not capped."""
        return -self.taus[self.layers.index(layer)] if layer in self.layers else None


def default_capping_layers(n_layers: int) -> list[int]:
    low, high = (int(round(fraction * (n_layers - 1))) for fraction in DEFAULT_DEPTH)
    return list(range(low, max(high, low) + 1))


def experiment_id(layers: Sequence[int], percentile: float) -> str:
    """assistant-axis's experiment names: ``layers_46:54-p0.25``."""
    return f"layers_{min(layers)}:{max(layers)}-p{percentile:g}"


def token_projections(model: Any, tokenizer: Any, conversations: Sequence[list[dict[str, str]]],
                      units: dict[int, np.ndarray], batch_size: int = 8, max_length: int = 1024,
                      model_name: str = "the target model") -> dict[int, np.ndarray]:
    """Every reply token's projection on ``units[layer]`` ``[d]`` at each layer: ``{layer: [n_tokens]}``."""
    import torch

    from steering_assets.models.residual import reply_block_outputs

    found: dict[int, list[np.ndarray]] = {layer: [] for layer in units}
    with torch.no_grad():
        for captured, reply in reply_block_outputs(model, tokenizer, conversations, units, batch_size=batch_size,
                                                   max_length=max_length, model_name=model_name):
            for layer, unit in units.items():
                hidden = captured[layer].float()
                projection = hidden @ torch.as_tensor(unit, dtype=torch.float32, device=hidden.device)
                found[layer].append(projection[reply.to(hidden.device)].cpu().numpy())
    return {layer: np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32) for layer, parts in found.items()}


def plan_from_axis(axis: np.ndarray, projections: dict[int, np.ndarray], percentile: float = DEFAULT_PERCENTILE) -> CappingPlan:
    """The capping plan for the layers of ``projections`` (default tokens on the unit axis), see the module docstring."""
    if not 0 < percentile < 1:
        raise CappingConfigError(f"percentile {percentile} must be between 0 and 1 (assistant-axis: 0.25)")
    layers = sorted(projections)
    directions, taus = [], []
    for layer in layers:
        if projections[layer].size == 0:
            raise CappingConfigError(f"layer {layer}: no default reply token to take the {percentile:g} quantile of")
        row = axis[layer].astype(np.float64)
        directions.append((-row / max(float(np.linalg.norm(row)), 1e-12)).astype(np.float32))
        taus.append(-float(np.quantile(projections[layer], percentile)))
    return CappingPlan(experiment_id(layers, percentile), tuple(layers), np.stack(directions), tuple(taus), percentile)


def save_capping_config(plan: CappingPlan, path: Path, n_layers: int, hidden_size: int, model: str) -> None:
    import torch

    vectors = {f"layer_{layer}": {"layer": int(layer), "vector": torch.from_numpy(np.ascontiguousarray(direction))}
               for layer, direction in zip(plan.layers, plan.directions)}
    interventions = [{"vector": f"layer_{layer}", "cap": float(tau)} for layer, tau in zip(plan.layers, plan.taus)]
    torch.save({"vectors": vectors, "experiments": [{"id": plan.experiment_id, "interventions": interventions}],
                "n_layers": int(n_layers), "hidden_size": int(hidden_size), "model": model}, path)


def read_capping_config(path: Path | str, n_layers: int, hidden_size: int, experiment: str | int = 0,
                        log: Callable[[str], None] = print) -> CappingPlan:
    """One experiment of a ``capping_config.pt`` (ours or assistant-axis's) as a plan for a model of ``n_layers``
    blocks and width ``hidden_size``.

    Raises ``CappingConfigError`` naming the file when it was written for another layer count, when
    a layer or vector does not fit the model, or when the experiment is not in it (listing those that are).
    """
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "vectors" not in payload or "experiments" not in payload:
        raise CappingConfigError(f"{path}: expected assistant-axis's capping config (a dict with 'vectors' and 'experiments')")
    written_for = payload.get("n_layers")
    if written_for is not None and int(written_for) != n_layers:
        raise CappingConfigError(f"{path}: written for a model with {written_for} decoder layers; this model has {n_layers}")
    chosen = _experiment(payload["experiments"], experiment, path)
    layers, directions, taus = [], [], []
    for intervention in chosen.get("interventions", []):
        if "cap" not in intervention:
            # assistant-axis's experiments may mix in non-capping interventions; their builder skips them too.
            log(f"{path}: experiment {chosen.get('id')!r}: intervention {intervention} has no 'cap'; not applied")
            continue
        name = intervention["vector"]
        entry = payload["vectors"].get(name)
        if entry is None:
            raise CappingConfigError(f"{path}: experiment {chosen.get('id')!r} names vector {name!r}, which is not in 'vectors'")
        layer, vector = int(entry["layer"]), entry["vector"].float().flatten().numpy()
        if not 0 <= layer < n_layers:
            raise CappingConfigError(f"{path}: vector {name!r} is for layer {layer}; this model has layers 0-{n_layers - 1}")
        if vector.size != hidden_size:
            raise CappingConfigError(f"{path}: vector {name!r} has {vector.size} entries; this model's hidden size is {hidden_size}")
        layers.append(layer)
        directions.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
        taus.append(float(intervention["cap"]))
    if not layers:
        raise CappingConfigError(f"{path}: experiment {chosen.get('id')!r} has no capping intervention")
    return CappingPlan(str(chosen.get("id")), tuple(layers), np.stack(directions).astype(np.float32), tuple(taus))


def _experiment(experiments: list, wanted: str | int, path: Path | str) -> dict:
    if isinstance(wanted, int):
        if not 0 <= wanted < len(experiments):
            raise CappingConfigError(f"{path}: experiment index {wanted} is out of range ({len(experiments)} experiments)")
        return experiments[wanted]
    for experiment in experiments:
        if experiment.get("id") == wanted:
            return experiment
    raise CappingConfigError(f"{path}: no experiment {wanted!r}; it has {[e.get('id') for e in experiments]}")
