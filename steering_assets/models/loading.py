"""Loading a frozen causal LM on the right device(s), the same way for a local folder or a hub id,
and padding batches for tokenizers with and without a pad token."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from steering_assets.core.errors import InputError


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f'dtype {dtype!r} is not one of "auto", "float32", "bfloat16", "float16"') from None


DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
QUANTIZATIONS = ("8bit", "4bit")


def resolve_device_map(device: str, device_map: str | dict | None = None) -> str | dict:
    """The ``device_map`` handed to ``from_pretrained``: weights load straight onto their device.

    ``device_map`` unset: the whole model on ``device`` (``{"": "cuda:0"}``, ``{"": "cpu"}``).
    ``"auto"`` / ``"balanced"`` / ``"balanced_low_0"`` / ``"sequential"``: accelerate shards the
    blocks over every GPU the process sees (``CUDA_VISIBLE_DEVICES`` is the run's GPUs). A dict,
    or its JSON text, maps module names to devices explicitly. Raises ``ValueError`` otherwise.
    """
    import json

    if device_map is None or device_map == "":
        resolved = resolve_device(device)
        if resolved == "cuda":
            import torch

            resolved = f"cuda:{torch.cuda.current_device()}"
        return {"": resolved}
    if isinstance(device_map, dict):
        return device_map
    if device_map in DEVICE_MAP_STRATEGIES:
        return device_map
    try:
        parsed = json.loads(device_map)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(
            f"device_map {device_map!r} is not one of {', '.join(DEVICE_MAP_STRATEGIES)} nor a JSON object mapping "
            'module names to devices (e.g. {"model.embed_tokens": 0, "model.layers.0": 0, ...})'
        )
    return parsed


def quantization_config(quantization: str | None, dtype: Any) -> Any:
    """A ``BitsAndBytesConfig`` for ``"8bit"`` or ``"4bit"`` (NF4, computing in ``dtype``); None for no quantisation.

    bitsandbytes is optional (``pip install 'steering-assets[quantization]'``); asking for
    quantisation without it raises ``ImportError`` saying so, before any weight is read.
    """
    if quantization is None or quantization == "":
        return None
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization {quantization!r} is not one of {', '.join(QUANTIZATIONS)} (or unset)")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError(
            f"quantization={quantization!r} needs the optional bitsandbytes package, which is not installed: "
            "pip install 'steering-assets[quantization]' (a CUDA GPU is needed for most of its kernels)"
        )
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)


def load_causal_lm(
    name_or_path: str,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    trust_remote_code: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    attn_implementation: str | None = None,
    device_map: str | dict | None = None,
    quantization: str | None = None,
) -> Any:
    """Load the model onto its device(s), switch to eval mode and freeze every parameter.

    Weights are loaded with ``device_map`` (see ``resolve_device_map``): straight onto one GPU,
    or sharded block by block over the run's GPUs, never as a full CPU copy moved afterwards.
    ``dtype`` as in ``resolve_dtype``; ``quantization`` as in ``quantization_config``. Loading
    errors name the model and say how to point ``PERSONA_MODEL`` elsewhere.
    """
    from transformers import AutoModelForCausalLM

    from steering_assets.models.hooks import freeze

    placement = resolve_device_map(device, device_map)
    # "auto" dtype follows the device: bfloat16 when the weights go to CUDA, float32 on a CPU.
    torch_dtype = resolve_dtype(dtype, resolve_device(device))
    kwargs: dict[str, Any] = {
        "revision": revision, "local_files_only": local_files_only, "trust_remote_code": trust_remote_code,
        "device_map": placement, "dtype": torch_dtype,
    }
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    quantized = quantization_config(quantization, torch_dtype)
    if quantized is not None:
        kwargs["quantization_config"] = quantized
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except OSError as err:
        raise OSError(
            f"could not load the model {name_or_path!r} (local_files_only={local_files_only}): {err}. "
            "Set PERSONA_MODEL to a local model folder or a hub id that is in the local cache."
        ) from err
    return freeze(model.eval())


class MissingPadTokenError(InputError, ValueError):
    """A tokenizer with neither a pad token nor an EOS token to pad with."""


def padding_token_id(tokenizer: Any, model_name: str, setting: str = "PERSONA_MODEL") -> int:
    """The id batched inputs are padded with: the pad token, else EOS (Llama and Mistral base models have no pad).

    Padded positions are masked out by the attention mask, so any token works; EOS is the
    usual choice. Raises ``MissingPadTokenError`` naming the model and ``setting`` when the
    tokenizer has neither.
    """
    if getattr(tokenizer, "pad_token_id", None) is not None:
        return int(tokenizer.pad_token_id)
    if getattr(tokenizer, "eos_token_id", None) is not None:
        return int(tokenizer.eos_token_id)
    raise MissingPadTokenError(
        f"the tokenizer of {model_name!r} ({setting}) has no pad token and no EOS token, so batches cannot be "
        f"padded; set {setting} to a model whose tokenizer defines one, or add a pad token to its tokenizer_config.json"
    )


@contextmanager
def padded_batches(tokenizer: Any, side: str, model_name: str, setting: str = "PERSONA_MODEL") -> Iterator[int]:
    """Within the block, ``tokenizer(..., padding=True)`` pads on ``side`` with the pad token (EOS when none).

    ``side`` is ``"left"`` for generation and next-token scoring (the last position is the last
    real token of every row) and ``"right"`` for training and reading hidden states. The
    tokenizer's own settings are restored afterwards (it is shared, cached per process).
    Yields the pad id; raises ``MissingPadTokenError`` before any work (see ``padding_token_id``).
    """
    if side not in ("left", "right"):
        raise ValueError(f'padding side must be "left" or "right", got {side!r}')
    pad_id = padding_token_id(tokenizer, model_name, setting)
    saved_side, saved_pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = side
    if saved_pad is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield pad_id
    finally:
        tokenizer.padding_side = saved_side
        if saved_pad is None:
            tokenizer.pad_token = None


def local_model_identity(name_or_path: str) -> str:
    """``name_or_path``, plus a stamp of its files when it is a local folder.

    Judgments and artifacts keyed by a model's name must change when a local folder is
    retrained in place; sizes and modification times catch that without hashing gigabytes.
    """
    from pathlib import Path

    from steering_assets.core.artifacts import fingerprint

    folder = Path(name_or_path)
    if not folder.is_dir():
        return name_or_path
    stamp = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir()) if p.is_file()}
    return f"{name_or_path}@{fingerprint(stamp)[:12]}"
