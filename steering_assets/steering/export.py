"""Steering vectors in the files other tools load, and published vectors read back for evaluation here.

Our layer L is the residual stream at the output of decoder block L (0-based), before the
final norm (docs/steering.md#layers). Each format's own numbering, and how it maps to ours:

- llama.cpp control vector (GGUF, ``--control-vector``): ``general.architecture =
  "controlvector"``, one 1-D F32 tensor ``direction.{N}`` of ``n_embd`` per layer. llama.cpp's
  loader (``common_control_vector_load_one``) stores ``direction.N`` at buffer offset
  ``(N - 1) * n_embd``, its adapter (``llama_adapter_cvec::apply``) fills block ``il``'s tensor
  from offset ``(il - 1) * n_embd``, and each block adds it to its output (``build_cvec`` after
  the FFN residual). So ``direction.N`` is added to the output of block N: **N equals our L**.
  ``direction.0`` is rejected by llama.cpp ("invalid (zero) direction tensor layer index"):
  block 0 cannot be steered there, and exporting layer 0 raises ``ExportLayerError``.
- lm-evaluation-harness ``steered`` model (``--model steered --model_args
  pretrained=...,steer_path=x.pt``): ``torch.load`` of ``{hookpoint: {"steering_vector": [d],
  "steering_coefficient": float, "action": "add", "bias": None}}``; the hookpoint is a module
  name under ``model.base_model`` and ``acts + coefficient * steering_vector`` is added to that
  module's output. Our layer L is the hookpoint of block L (``layers.L`` for Llama-style models,
  ``h.L`` for GPT-2, ``language_model.layers.L`` for Gemma3ForConditionalGeneration).
- assistant-axis layer stack (``assistant_axis.pt``): a ``[n_layers, d]`` tensor whose row L is
  captured by a forward hook on block L and steered there: **row L is our L**. Our export puts
  the vector in its row and zeros elsewhere.
- persona-vectors (``{trait}_response_avg_diff.pt``): ``[n_layers + 1, d]`` built from
  ``output_hidden_states``, so row 0 is the embeddings and row N the output of block N - 1
  (its last row is the final norm's output); it steers row N at block N - 1: **row N is our
  L = N - 1**. Read with ``convention="persona-vectors"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from steering_assets.core.errors import InputError
from steering_assets.models.errors import VectorShapeError

GGUF_FILE = "control_vector.gguf"
LM_EVAL_FILE = "lm_eval_steer.pt"
LAYER_STACK_FILE = "layer_stack.pt"
CONVENTIONS = ("assistant-axis", "persona-vectors")


class ExportLayerError(InputError, ValueError):
    """A layer the target format cannot address."""


@dataclass(frozen=True)
class ModelShape:
    """What an export needs to know about the model the vector was made for."""

    n_layers: int
    hidden_size: int
    model_type: str
    hookpoints: tuple[str, ...]  # lm-eval hookpoint (module name under model.base_model) of each block

    @classmethod
    def of(cls, model: Any) -> "ModelShape":
        from steering_assets.models.hooks import decoder_layers, hidden_size

        blocks = decoder_layers(model)
        base = getattr(model, "base_model", model)
        names = {id(module): name for name, module in base.named_modules()}
        hookpoints = tuple(names.get(id(block), "") for block in blocks)
        config = getattr(model, "config", None)
        return cls(len(blocks), hidden_size(model), str(getattr(config, "model_type", "") or ""), hookpoints)


@dataclass(frozen=True)
class ImportedVector:
    """A published vector, in our terms: add ``vector`` ([d], float32) to the output of block ``layer``."""

    layer: int
    vector: Any  # torch.Tensor [d]
    source: str

    def attach(self, model: Any, coefficient: float = 1.0):
        """Steer ``model`` with it; returns the ``SteeringHandle`` (``remove()`` restores the model)."""
        from steering_assets.models.hooks import attach_steering

        handle = attach_steering(model, self.layer, 1, self.vector[None])
        handle.steering.coefficient = coefficient
        return handle

    def save(self, folder: Path, model_name: str) -> None:
        """Write it as one of our vector folders (``vector.safetensors`` + ``steering_config.json``),
        which ``steering_assets.steering.vectors.load_into`` and the evaluation functions read."""
        from steering_assets.steering.config import CONFIG_FILE, VECTOR_FILE
        from steering_assets.steering.vectors import write_vector

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_vector(self.vector, folder / VECTOR_FILE)
        config = {"model": model_name, "layer": self.layer, "hidden_size": int(self.vector.shape[0]), "imported_from": self.source}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def _as_array(vector: Any, shape: ModelShape, source: str) -> np.ndarray:
    array = vector.detach().float().cpu().numpy() if hasattr(vector, "detach") else np.asarray(vector, dtype=np.float32)
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim != 1 or array.shape[0] != shape.hidden_size:
        raise VectorShapeError(f"{source}: vector has shape {tuple(array.shape)}, the model has hidden size {shape.hidden_size}")
    return array


def _check_layer(layer: int, shape: ModelShape, target: str) -> None:
    if not 0 <= layer < shape.n_layers:
        raise ExportLayerError(f"{target}: layer {layer} is outside the model ({shape.n_layers} decoder blocks, 0-{shape.n_layers - 1})")


# ---- llama.cpp GGUF control vector -------------------------------------------------------

def llama_cpp_direction(layer: int, shape: ModelShape) -> int:
    """The ``direction.{N}`` index llama.cpp applies at our layer ``layer`` (N = L, for L >= 1)."""
    _check_layer(layer, shape, "llama.cpp control vector")
    if layer == 0:
        raise ExportLayerError(
            "llama.cpp cannot steer block 0: its control vectors start at direction.1 (the output of block 1) and "
            "its loader rejects direction.0; train or export the vector at layer 1 or above for llama.cpp"
        )
    return layer


def write_gguf_control_vector(vector: Any, layer: int, shape: ModelShape, path: Path) -> None:
    """A llama.cpp control-vector GGUF holding ``vector`` as ``direction.{layer}`` (see the module docstring)."""
    import gguf

    index = llama_cpp_direction(layer, shape)
    array = _as_array(vector, shape, str(path))
    writer = gguf.GGUFWriter(str(path), "controlvector")
    if shape.model_type:
        writer.add_string("controlvector.model_hint", shape.model_type)
    writer.add_int32("controlvector.layer_count", 1)
    writer.add_tensor(f"direction.{index}", array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _field_value(field: Any) -> Any:
    """A scalar or string GGUF metadata value (``ReaderField.contents()`` where the gguf package has it)."""
    if field is None:
        return None
    if hasattr(field, "contents"):
        return field.contents()
    value = field.parts[field.data[0]]
    return bytes(value).decode("utf-8") if field.types and field.types[0].name == "STRING" else value.tolist()[0]


def read_gguf_control_vector(path: Path) -> dict[int, np.ndarray]:
    """``{N: direction.N}`` of a llama.cpp control-vector GGUF, checked as llama.cpp's loader checks it."""
    import gguf

    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:
        raise VectorShapeError(f"{path}: not a readable GGUF file ({err})") from err
    architecture = _field_value(reader.fields.get("general.architecture"))
    if architecture != "controlvector":
        raise VectorShapeError(f"{path}: general.architecture is {architecture!r}, a control vector has 'controlvector'")
    directions: dict[int, np.ndarray] = {}
    for tensor in reader.tensors:
        prefix, _, number = tensor.name.partition(".")
        if prefix != "direction" or not number.isdigit():
            raise VectorShapeError(f"{path}: tensor {tensor.name!r} is not named direction.<layer>")
        if int(number) == 0:
            raise VectorShapeError(f"{path}: direction.0 is invalid (llama.cpp never steers block 0 and refuses it)")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32 or len(tensor.shape) != 1:
            raise VectorShapeError(f"{path}: {tensor.name} must be a 1-D F32 tensor, found {tensor.tensor_type.name} {list(tensor.shape)}")
        directions[int(number)] = np.array(tensor.data, dtype=np.float32).reshape(-1)
    if not directions:
        raise VectorShapeError(f"{path}: no direction.<layer> tensors")
    sizes = {len(v) for v in directions.values()}
    if len(sizes) > 1:
        raise VectorShapeError(f"{path}: direction tensors have different sizes {sorted(sizes)}")
    return dict(sorted(directions.items()))


def import_gguf_control_vector(path: Path, model: Any, layer: int | None = None) -> ImportedVector:
    """Read a llama.cpp control vector for ``model``: its ``direction.{layer}`` (the only one when ``layer`` is None).

    Raises ``VectorShapeError`` when its ``n_embd`` is not the model's hidden size, when it has
    directions (or a ``controlvector.layer_count``) for more blocks than the model has, or
    when ``layer`` is not among its directions.
    """
    import gguf
    import torch

    shape = ModelShape.of(model)
    directions = read_gguf_control_vector(path)
    n_embd = len(next(iter(directions.values())))
    if n_embd != shape.hidden_size:
        raise VectorShapeError(f"{path}: control vector has n_embd {n_embd}, but the model has hidden size {shape.hidden_size}; "
                               "it was made for another model")
    beyond = [n for n in directions if n >= shape.n_layers]
    count = _field_value(gguf.GGUFReader(str(path)).fields.get("controlvector.layer_count"))
    declared = int(count) if count is not None else None
    if beyond or (declared is not None and declared > shape.n_layers):
        raise VectorShapeError(
            f"{path}: control vector has {'directions ' + str(beyond) if beyond else f'layer_count {declared}'}, but the model "
            f"has {shape.n_layers} decoder blocks (llama.cpp direction.N steers block N, so N must be 1-{shape.n_layers - 1})"
        )
    if layer is None:
        if len(directions) > 1:
            raise VectorShapeError(f"{path}: holds directions for layers {sorted(directions)}; pick one with layer=")
        layer = next(iter(directions))
    if layer not in directions:
        raise VectorShapeError(f"{path}: no direction.{layer}; it holds layers {sorted(directions)}")
    return ImportedVector(layer, torch.from_numpy(directions[layer].copy()), f"{path} (llama.cpp direction.{layer})")


# ---- lm-evaluation-harness `steered` model -----------------------------------------------

def lm_eval_hookpoint(layer: int, shape: ModelShape) -> str:
    _check_layer(layer, shape, "lm-eval steered model")
    hookpoint = shape.hookpoints[layer]
    if not hookpoint:
        raise ExportLayerError(f"lm-eval steered model: decoder block {layer} is not a named module under model.base_model")
    return hookpoint


def write_lm_eval_steer(vector: Any, layer: int, shape: ModelShape, path: Path, coefficient: float = 1.0) -> None:
    """lm-eval's ``steer_path`` ``.pt``: ``{hookpoint: {steering_vector [d], steering_coefficient, action: "add", bias: None}}``."""
    import torch

    array = _as_array(vector, shape, str(path))
    payload = {lm_eval_hookpoint(layer, shape): {
        "steering_vector": torch.from_numpy(array.copy()),
        "steering_coefficient": float(coefficient),
        "action": "add",
        "bias": None,  # read unconditionally by lm-eval's loader
    }}
    torch.save(payload, path)


def import_lm_eval_steer(path: Path, model: Any) -> ImportedVector:
    """The single ``add`` entry of an lm-eval ``steer_path`` file, with its coefficient folded into the vector."""
    import torch

    shape = ModelShape.of(model)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or len(payload) != 1:
        raise VectorShapeError(f"{path}: expected one {{hookpoint: {{steering_vector, ...}}}} entry, found {type(payload).__name__}"
                               f"{' with ' + str(len(payload)) + ' entries' if isinstance(payload, dict) else ''}")
    hookpoint, entry = next(iter(payload.items()))
    if hookpoint not in shape.hookpoints:
        raise VectorShapeError(f"{path}: hookpoint {hookpoint!r} is not a decoder block of this model (blocks are "
                               f"{shape.hookpoints[0]!r} ... {shape.hookpoints[-1]!r})")
    if entry.get("action", "add") != "add":
        raise VectorShapeError(f"{path}: action {entry.get('action')!r}; only 'add' is a steering vector")
    vector = torch.as_tensor(entry["steering_vector"]).float() * float(entry.get("steering_coefficient", 1.0))
    _as_array(vector, shape, str(path))
    return ImportedVector(shape.hookpoints.index(hookpoint), vector, f"{path} (lm-eval hookpoint {hookpoint})")


# ---- assistant-axis / persona-vectors layer stacks ----------------------------------------

def write_layer_stack(vector: Any, layer: int, shape: ModelShape, path: Path) -> None:
    """A ``[n_layers, d]`` float32 tensor (assistant-axis layout): row ``layer`` is the vector, every other row zero."""
    import torch

    _check_layer(layer, shape, "layer stack")
    stack = torch.zeros(shape.n_layers, shape.hidden_size, dtype=torch.float32)
    stack[layer] = torch.from_numpy(_as_array(vector, shape, str(path)).copy())
    torch.save(stack, path)


def import_layer_stack(path: Path, model: Any, layer: int, convention: str = "assistant-axis") -> ImportedVector:
    """Our layer ``layer`` of a published layer stack (a tensor, or a dict with an ``"axis"`` tensor).

    ``convention="assistant-axis"``: ``[n_layers, d]``, row L = block L. ``"persona-vectors"``:
    ``[n_layers + 1, d]`` from ``output_hidden_states``, row L + 1 = block L. Raises
    ``VectorShapeError`` when the stack's row count or width does not fit the model.
    """
    import torch

    if convention not in CONVENTIONS:
        raise ValueError(f"convention {convention!r} is not one of {', '.join(CONVENTIONS)}")
    shape = ModelShape.of(model)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    stack = payload.get("axis") if isinstance(payload, dict) else payload
    if not isinstance(stack, torch.Tensor) or stack.ndim != 2:
        raise VectorShapeError(f"{path}: expected a [layers, d] tensor (or a dict with an 'axis' tensor), found "
                               f"{tuple(stack.shape) if isinstance(stack, torch.Tensor) else type(stack).__name__}")
    rows = shape.n_layers + (1 if convention == "persona-vectors" else 0)
    if stack.shape[0] != rows or stack.shape[1] != shape.hidden_size:
        other = {shape.n_layers: "assistant-axis", shape.n_layers + 1: "persona-vectors"}.get(int(stack.shape[0]))
        hint = f"; its row count fits convention={other!r}" if other and other != convention else ""
        raise VectorShapeError(
            f"{path}: layer stack is {tuple(stack.shape)}, but a {convention} stack for this model is ({rows}, "
            f"{shape.hidden_size}) ({shape.n_layers} decoder blocks, hidden size {shape.hidden_size}){hint}"
        )
    _check_layer(layer, shape, str(path))
    row = layer + 1 if convention == "persona-vectors" else layer
    return ImportedVector(layer, stack[row].float().clone(), f"{path} ({convention} row {row})")


# ---- every export of one vector -----------------------------------------------------------

def export_writers(vector: Any, layer: int, shape: ModelShape) -> tuple[dict[str, Callable[[Path], None]], dict[str, str]]:
    """File writers of every export of ``vector`` (for ``ArtifactStore.write_artifact``), and why any was left out."""
    writers: dict[str, Callable[[Path], None]] = {
        LM_EVAL_FILE: lambda p: write_lm_eval_steer(vector, layer, shape, p),
        LAYER_STACK_FILE: lambda p: write_layer_stack(vector, layer, shape, p),
    }
    skipped: dict[str, str] = {}
    try:
        llama_cpp_direction(layer, shape)
        writers[GGUF_FILE] = lambda p: write_gguf_control_vector(vector, layer, shape, p)
    except ExportLayerError as err:
        skipped[GGUF_FILE] = str(err)
    return writers, skipped
