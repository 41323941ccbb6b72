"""The assistant-axis fan-in over 275 role vectors: assistant-axis's stack-everything way against our streaming one.

Synthetic role vectors of a 64-layer, 5120-wide model held as float32 (274 roles and the default assistant,
275 x 64 x 5120 x 4 bytes = 360 MB; random normal data from a fixed seed, with a planted role-playing direction
per layer so the PCA has a PC1 to find) are written once to a temporary folder in both layouts:
``pt/{role}.pt`` (``torch.save({"vector", "type", "role"})``, assistant-axis's ``pipeline/4_vectors.py``
output) and ``safetensors/{role}/role_vector.safetensors`` (ours). Each way then computes the axis
(``mean(default vectors) - mean(role vectors)``) and a mean-centred PCA of the role vectors at one layer:

- assistant-axis's way: ``pipeline/5_axis.py`` (``torch.load`` every ``.pt`` into a list, ``torch.stack`` the
  default and the role vectors, ``mean(dim=0)`` of each, subtract), then ``notebooks/2_pca_analysis.ipynb``
  (``torch.load`` every file again, keep ``vector[layer]``, ``torch.stack``, their ``MeanScaler`` (subtract the
  mean) and scikit-learn's ``PCA()`` with every component);
- ours: ``AxisAccumulator`` (float64 running sums, one vector in memory at a time) over
  ``safetensors.numpy.load_file`` reads, then a second read of every file keeping only the layer's row (a copy,
  so the rest of the vector is freed) and ``persona_pca(..., n_components=5, scaling="mean")``, as
  ``materialize_axis`` / ``materialize_persona_pca`` do. The PCA takes the 274 role rows (the default assistant is
  passed aside, as ``materialize_persona_pca`` does), the same rows for both.

Each way runs in a fresh process of this script (a hidden ``--worker`` flag) so its peak memory is its own:
``ru_maxrss`` at the end less ``ru_maxrss`` right after the imports, both ways importing the same modules.
The files were just written, so both read from the page cache. Prints seconds, peak memory, the ratios
(theirs / ours) and how far the two axes and PC1s agree.

    .venv/bin/python benchmarks/persona_space_fanin.py [--roles 275] [--layers 64] [--width 5120] [--layer L]

Needs about twice the vectors' size on disk (720 MB at the default sizes), removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEED = 0
DEFAULT = "default"


def role_names(count: int) -> list[str]:
    """``count - 1`` role names and the default assistant's."""
    return [f"role_{i:03d}" for i in range(count - 1)] + [DEFAULT]


def write_vectors(folder: Path, names: list[str], layers: int, width: int) -> None:
    """Every role's ``[layers, width]`` float32 vector in both layouts; roles spread along a planted unit direction
    per layer, the default assistant sits at its positive end."""
    import torch
    from safetensors.torch import save_file

    rng = np.random.default_rng(SEED)
    direction = rng.standard_normal((layers, width)).astype(np.float32)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    (folder / "pt").mkdir()
    for name in names:
        is_default = name == DEFAULT
        scale = 40.0 if is_default else rng.normal(0.0, 10.0)
        vector = (rng.standard_normal((layers, width), dtype=np.float32) + np.float32(scale) * direction).astype(np.float32)
        tensor = torch.from_numpy(vector)
        torch.save({"vector": tensor, "type": "mean" if is_default else "pos_3", "role": name}, folder / "pt" / f"{name}.pt")
        role_folder = folder / "safetensors" / name
        role_folder.mkdir(parents=True)
        save_file({"vector": tensor}, str(role_folder / "role_vector.safetensors"))


def peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def theirs(folder: Path, layer: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """assistant-axis's pipeline/5_axis.py, then the PCA notebook: (axis, PC1, axis seconds, PCA seconds)."""
    import torch
    from sklearn.decomposition import PCA

    started = time.perf_counter()
    default_vectors, role_vectors = [], []
    for vec_file in sorted((folder / "pt").glob("*.pt")):
        data = torch.load(vec_file, map_location="cpu", weights_only=False)
        if data.get("role", vec_file.stem) == DEFAULT or data.get("type", "unknown") == "mean":
            default_vectors.append(data["vector"])
        else:
            role_vectors.append(data["vector"])
    default_mean = torch.stack(default_vectors).mean(dim=0)
    role_mean = torch.stack(role_vectors).mean(dim=0)
    axis = default_mean - role_mean
    axis_seconds = time.perf_counter() - started
    del default_vectors, role_vectors
    started = time.perf_counter()
    rows = []
    for act_file in sorted((folder / "pt").glob("*.pt")):
        data = torch.load(act_file, map_location="cpu", weights_only=False)
        if act_file.stem != DEFAULT:
            rows.append(data["vector"][layer])
    activations = torch.stack(rows).numpy()
    scaled = activations - activations.mean(axis=0)  # their MeanScaler
    pca = PCA()
    pca.fit_transform(scaled)
    pc1 = pca.components_[0].astype(np.float64)
    return axis.numpy(), pc1, axis_seconds, time.perf_counter() - started


def ours(folder: Path, layer: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """AxisAccumulator over safetensors reads, then persona_pca on the layer's rows: (axis, PC1, seconds, seconds)."""
    from safetensors.numpy import load_file

    from steering_assets.persona_space.axis import AxisAccumulator
    from steering_assets.persona_space.space import persona_pca

    started = time.perf_counter()
    paths = sorted((folder / "safetensors").glob("*/role_vector.safetensors"))
    accumulator = AxisAccumulator()
    for path in paths:
        accumulator.add(path.parent.name, load_file(str(path))["vector"], path.parent.name == DEFAULT, where=str(path))
    axis = accumulator.result()
    axis_seconds = time.perf_counter() - started
    started = time.perf_counter()
    roles, rows, default_rows = [], [], []
    for path in paths:
        row = load_file(str(path))["vector"][layer].copy()  # a view would keep the whole vector alive
        if path.parent.name == DEFAULT:
            default_rows.append(row)
        else:
            roles.append(path.parent.name)
            rows.append(row)
    space = persona_pca(roles, np.stack(rows), axis.axis[layer], layer, n_components=5, scaling="mean",
                        default_vector=np.mean(default_rows, axis=0))
    return axis.axis, space.components[0], axis_seconds, time.perf_counter() - started


def worker(way: str, folder: Path, layer: int, out: Path) -> None:
    """One way in this (fresh) process; writes its axis and PC1 to ``out`` and prints its figures as JSON."""
    import sklearn.decomposition  # noqa: F401  (both ways import the same modules before the baseline)
    import sklearn.preprocessing  # noqa: F401
    import safetensors.numpy  # noqa: F401
    import torch  # noqa: F401

    import steering_assets.persona_space.axis  # noqa: F401
    import steering_assets.persona_space.space  # noqa: F401

    baseline = peak_kib()
    axis, pc1, axis_seconds, pca_seconds = (theirs if way == "theirs" else ours)(folder, layer)
    peak = peak_kib() - baseline
    np.savez(out, axis=axis, pc1=pc1)
    print(json.dumps({"axis_s": axis_seconds, "pca_s": pca_seconds, "peak_kib": peak, "baseline_kib": baseline}))


def run_worker(way: str, folder: Path, layer: int) -> tuple[dict, np.ndarray, np.ndarray]:
    out = folder / f"{way}.npz"
    done = subprocess.run([sys.executable, __file__, "--worker", way, "--folder", str(folder), "--layer", str(layer),
                           "--out", str(out)], check=True, capture_output=True, text=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    saved = np.load(out)
    return figures, saved["axis"], saved["pc1"]


def total_seconds(figures: dict) -> float:
    return figures["axis_s"] + figures["pca_s"]


def report(args: argparse.Namespace, layer: int, figures: dict[str, dict], agreement: tuple[float, float]) -> None:
    size_mb = args.roles * args.layers * args.width * 4 / 1e6
    print(f"\n{args.roles} role vectors ({args.roles - 1} roles + default) x {args.layers} layers x {args.width} float32 "
          f"= {size_mb:.0f} MB; PCA at layer {layer}; {os.cpu_count()} cores")
    print(f"best of {args.repeats} runs of each way, each in a fresh process")
    print(f"{'way':16} {'axis s':>8} {'PCA s':>8} {'total s':>8} {'peak MiB':>9}")
    for way, label in (("theirs", "assistant-axis"), ("ours", "ours")):
        f = figures[way]
        print(f"{label:16} {f['axis_s']:8.2f} {f['pca_s']:8.2f} {total_seconds(f):8.2f} {f['peak_kib'] / 1024:9.1f}")
    total = {way: total_seconds(f) for way, f in figures.items()}
    peak = {way: max(f["peak_kib"], 1) for way, f in figures.items()}
    print(f"theirs / ours: time {total['theirs'] / total['ours']:.2f}x, peak memory {peak['theirs'] / peak['ours']:.1f}x "
          "(peak = ru_maxrss at the end less right after the imports, each way in its own process)")
    print(f"agreement: max |axis theirs - axis ours| = {agreement[0]:.2e}, |cos(PC1 theirs, PC1 ours)| = {agreement[1]:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--roles", type=int, default=275, help="role vectors, the default assistant's included")
    parser.add_argument("--layers", type=int, default=64)
    parser.add_argument("--width", type=int, default=5120)
    parser.add_argument("--layer", type=int, default=None, help="the PCA's layer (default: the middle one)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs of each way (fresh processes)")
    parser.add_argument("--worker", choices=("theirs", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    layer = args.layers // 2 if args.layer is None else args.layer
    if args.worker:
        worker(args.worker, Path(args.folder), layer, Path(args.out))
        return
    if args.roles < 7 or not 0 <= layer < args.layers:
        sys.exit("need at least 7 role vectors (5 components) and a layer inside the layers")
    with tempfile.TemporaryDirectory(prefix="persona_space_fanin_") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        write_vectors(folder, role_names(args.roles), args.layers, args.width)
        print(f"wrote the vectors in both layouts in {time.perf_counter() - started:.1f} s")
        figures, axes, pc1s = {}, {}, {}
        for _ in range(args.repeats):  # interleaved; each run a fresh process, the fastest kept
            for way in ("theirs", "ours"):
                found, axes[way], pc1s[way] = run_worker(way, folder, layer)
                if way not in figures or total_seconds(found) < total_seconds(figures[way]):
                    figures[way] = found
        difference = float(np.abs(axes["theirs"].astype(np.float64) - axes["ours"]).max())
        a, b = pc1s["theirs"], pc1s["ours"]
        cosine = abs(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        report(args, layer, figures, (difference, cosine))


if __name__ == "__main__":
    main()
