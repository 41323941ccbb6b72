"""Loading a frozen causal LM on the right device, the same way for a local folder or a hub id."""

from __future__ import annotations

from typing import Any


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


def load_causal_lm(
    name_or_path: str,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    trust_remote_code: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    attn_implementation: str | None = None,
) -> Any:
    """Load the model, move it to the device, switch to eval mode and freeze every parameter."""
    from transformers import AutoModelForCausalLM

    from steering_assets.steering.hook import freeze

    device = resolve_device(device)
    kwargs = {"revision": revision, "local_files_only": local_files_only, "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=resolve_dtype(dtype, device), **kwargs)
    except OSError as err:
        raise OSError(
            f"could not load the model {name_or_path!r} (local_files_only={local_files_only}): {err}. "
            "Set PERSONA_MODEL to a local model folder or a hub id that is in the local cache."
        ) from err
    return freeze(model.to(device).eval())


def local_model_identity(name_or_path: str) -> str:
    """``name_or_path``, plus a stamp of its files when it is a local folder.

    Judgments and artifacts keyed by a model's name must change when a local folder is
    retrained in place; sizes and modification times catch that without hashing gigabytes.
    """
    from pathlib import Path

    from steering_assets.artifacts import fingerprint

    folder = Path(name_or_path)
    if not folder.is_dir():
        return name_or_path
    stamp = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir()) if p.is_file()}
    return f"{name_or_path}@{fingerprint(stamp)[:12]}"
