"""What a process of the demo or the tests pays to import its libraries, with and without cached bytecode.

The Makefile unexports PYTHONDONTWRITEBYTECODE (some images set it). This script measures why:
each run is a fresh interpreter importing what a demo process imports (torch, transformers, TRL's
SFT trainer, dagster and this project's definitions). With PYTHONDONTWRITEBYTECODE=1 and no
cache yet (a fresh venv) every process compiles those modules from source again; without it
the first process writes the cache and the others load it. Each side gets a private, empty
bytecode folder (PYTHONPYCACHEPREFIX), so caches already in the venv do not count. It prints the
median seconds of each way and their ratio; the run that writes the cache is not counted.

    .venv/bin/python benchmarks/bytecode_cache.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPORTS = "import torch, transformers, dagster; import trl.trainer.sft_trainer; import steering_assets.definitions"


def import_seconds(cache: str, dont_write: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    if dont_write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], cwd=REPO, env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cached_dir, tempfile.TemporaryDirectory() as empty_dir:
        import_seconds(cached_dir, dont_write=False)  # writes the cache for the modules imported
        cached = [import_seconds(cached_dir, dont_write=False) for _ in range(args.runs)]
        compiled = [import_seconds(empty_dir, dont_write=True) for _ in range(args.runs)]
    print(f"imports, cached bytecode:  median {statistics.median(cached):.2f} s over {args.runs} runs")
    print(f"imports, compiled each run: median {statistics.median(compiled):.2f} s over {args.runs} runs")
    print(f"ratio (compiled / cached): {statistics.median(compiled) / statistics.median(cached):.2f}x")


if __name__ == "__main__":
    main()
