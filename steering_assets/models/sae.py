"""JumpReLU sparse autoencoders in the Gemma Scope ``params.npz`` layout.

One file per layer with ``W_enc [d_model, d_sae]``, ``W_dec [d_sae, d_model]``,
``b_enc [d_sae]``, ``b_dec [d_model]``, ``threshold [d_sae]``. Encoding is
``pre = x @ W_enc + b_enc; acts = (pre > threshold) * relu(pre)``. A set of SAEs is
listed in a JSON file of ``{layer, average_l0, path}`` entries (paths relative to it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steering_assets.core.errors import InputError

SAE_KEYS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


class SAEFormatError(InputError, ValueError):
    """An SAE file or SAE list that does not match the params.npz layout."""


@dataclass
class JumpReLUSAE:
    layer: int
    average_l0: float
    W_enc: np.ndarray
    W_dec: np.ndarray
    b_enc: np.ndarray
    b_dec: np.ndarray
    threshold: np.ndarray

    @property
    def d_model(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    def encode(self, x):
        """Feature activations of ``x [..., d_model]`` (numpy or torch, returned in kind)."""
        try:
            import torch

            if isinstance(x, torch.Tensor):
                w = torch.as_tensor(self.W_enc, dtype=x.dtype, device=x.device)
                b = torch.as_tensor(self.b_enc, dtype=x.dtype, device=x.device)
                t = torch.as_tensor(self.threshold, dtype=x.dtype, device=x.device)
                pre = x @ w + b
                return (pre > t) * torch.relu(pre)
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        pre = np.asarray(x) @ self.W_enc + self.b_enc
        return (pre > self.threshold) * np.maximum(pre, 0)

    def decode(self, acts: np.ndarray) -> np.ndarray:
        return np.asarray(acts) @ self.W_dec + self.b_dec

    def save(self, path: Path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, **{key: getattr(self, key).astype(np.float32) for key in SAE_KEYS})


def load_sae(path: Path | str, layer: int, average_l0: float, d_model: int | None = None) -> JumpReLUSAE:
    """Read one params.npz, refusing pickled content, missing keys and inconsistent shapes."""
    path = Path(path)
    if not path.is_file():
        raise SAEFormatError(f"{path}: SAE file not found (layer {layer})")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in SAE_KEYS if key not in data.files]
            if missing:
                raise SAEFormatError(f"{path}: missing {missing}; a JumpReLU SAE needs {list(SAE_KEYS)}")
            arrays = {key: np.asarray(data[key], dtype=np.float32) for key in SAE_KEYS}
    except ValueError as err:
        if isinstance(err, SAEFormatError):
            raise
        raise SAEFormatError(f"{path}: cannot be read without pickle ({err}); re-save it as plain float arrays") from None
    w_enc = arrays["W_enc"]
    if w_enc.ndim != 2:
        raise SAEFormatError(f"{path}: W_enc should be 2-D [d_model, d_sae], got shape {w_enc.shape}")
    dm, ds = w_enc.shape
    expected = {"W_dec": (ds, dm), "b_enc": (ds,), "b_dec": (dm,), "threshold": (ds,)}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise SAEFormatError(
                f"{path}: {key} has shape {arrays[key].shape}, expected {shape} (W_enc is [{dm}, {ds}])"
            )
    if d_model is not None and dm != d_model:
        raise SAEFormatError(f"{path}: SAE d_model is {dm} but the model's hidden size is {d_model}")
    return JumpReLUSAE(layer=layer, average_l0=float(average_l0), **arrays)


def load_sae_set(config_path: Path | str, d_model: int | None = None, n_layers: int | None = None) -> dict[int, JumpReLUSAE]:
    """Every SAE listed in a JSON file of ``[{"layer": 3, "average_l0": 52, "path": "layer_3/params.npz"}, ...]``."""
    config_path = Path(config_path)
    try:
        entries = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SAEFormatError(f"{config_path}: cannot read the SAE list ({err})") from None
    if not isinstance(entries, list) or not entries:
        raise SAEFormatError(f"{config_path}: expected a non-empty JSON list of {{layer, average_l0, path}} entries")
    saes: dict[int, JumpReLUSAE] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"layer", "average_l0", "path"} <= set(entry):
            raise SAEFormatError(f"{config_path}: entry {index} needs keys 'layer', 'average_l0' and 'path', got {entry!r}")
        layer = entry["layer"]
        if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0 or (n_layers is not None and layer >= n_layers):
            bound = f" (the model has {n_layers} layers)" if n_layers is not None else ""
            raise SAEFormatError(f"{config_path}: entry {index} has layer {layer!r}, expected a layer index{bound}")
        if layer in saes:
            raise SAEFormatError(f"{config_path}: layer {layer} is listed twice")
        saes[layer] = load_sae(config_path.parent / entry["path"], layer, entry["average_l0"], d_model)
    return dict(sorted(saes.items()))


def train_small_sae(activations: np.ndarray, d_sae: int, *, steps: int = 300, l1: float = 0.3, seed: int = 0, layer: int = 0) -> JumpReLUSAE:
    """A small SAE fitted to residual activations (ReLU + L1, then a JumpReLU threshold).

    The demo has no published SAEs, so it trains its own and saves them in the same
    layout real users download; the loading path is then the one they take.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(activations, dtype=torch.float32)
    mean = x.mean(0)
    d_model = x.shape[1]
    w_enc = torch.nn.Parameter(torch.randn(d_model, d_sae, generator=generator) * (1.0 / d_model**0.5))
    w_dec = torch.nn.Parameter(w_enc.detach().T.clone())
    b_enc = torch.nn.Parameter(torch.zeros(d_sae))
    b_dec = torch.nn.Parameter(mean.clone())
    optimizer = torch.optim.Adam([w_enc, w_dec, b_enc, b_dec], lr=3e-3)
    for step in range(steps):
        batch = x[torch.randint(0, len(x), (min(512, len(x)),), generator=generator)]
        acts = torch.relu((batch - b_dec) @ w_enc + b_enc)
        reconstruction = acts @ w_dec + b_dec
        loss = (reconstruction - batch).pow(2).sum(-1).mean() + l1 * (acts * w_dec.norm(dim=1)).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        # Fold the decoder bias into the encoder bias so encoding is x @ W_enc + b_enc, as in the layout.
        b_enc_folded = b_enc - b_dec @ w_enc
        pre = x @ w_enc + b_enc_folded
        positive = torch.where(pre > 0, pre, torch.full_like(pre, float("nan")))
        # Threshold: a low quantile of each feature's positive pre-activations (JumpReLU gate).
        threshold = torch.nan_to_num(torch.nanquantile(positive, 0.1, dim=0), nan=0.0).clamp(min=0)
        sae = JumpReLUSAE(
            layer=layer, average_l0=0.0,
            W_enc=w_enc.numpy().copy(), W_dec=w_dec.numpy().copy(), b_enc=b_enc_folded.numpy().copy(),
            b_dec=b_dec.numpy().copy(), threshold=threshold.numpy().copy(),
        )
        sae.average_l0 = float((sae.encode(activations) > 0).sum(-1).mean())
    return sae
