"""The test world: what SmolLM2-135M-Instruct said in a `make demo` run, and a tiny random model beside it.

``tests/fixtures/smollm2_demo`` holds one demo run's inputs and outputs as the platform wrote them
(README there): the instruction files, SmolLM2's generated rollouts for four roles, the default
assistant and two traits with the likelihood judge's scores, and the concept sentences cut from
the trait replies. Tests read that real text; where they need a model for mechanics (shapes,
hooks, training steps, batching), they get a tiny random-weight Qwen3 whose BPE tokenizer is
trained on those replies (``tests/tiny_models.py``) and SAEs fitted on its residual stream.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from demo.build import DemoWorkspace

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "smollm2_demo"
# The rollouts' source-model folder: what rollout_model_name() makes of the demo's GGUF.
SOURCE_MODEL = "SmolLM2-135M-Instruct.Q4_1"
ROLES = ("chef", "detective", "gardener", "pirate")
TRAITS = ("humorous", "optimistic")
# Blocks of the tiny model the test SAEs are fitted at (it has 4).
TINY_SAE_LAYERS = (1, 2)


@dataclass(frozen=True)
class TestWorkspace(DemoWorkspace):
    """The demo's layout (data, instructions, artifacts, concepts, saes, scenarios) and the tiny model beside it."""

    @property
    def model_path(self) -> Path:
        """The tiny random-weight model (mechanics only)."""
        return self.root / "models" / "tiny-qwen3"


def build_test_workspace(root: Path | str, seed: int = 0) -> TestWorkspace:
    """Copy the recorded demo run under ``root``, write the demo's scenarios, build the tiny model and its SAEs."""
    from demo.features import assistant_replies, train_demo_saes
    from demo.vetting import write_demo_scenarios
    from tests.tiny_models import save_tiny_model

    workspace = TestWorkspace(Path(root).resolve())
    for name in ("data", "instructions", "concepts"):
        shutil.copytree(FIXTURE / name, workspace.root / name)
    write_demo_scenarios(workspace.scenarios_root)
    texts = assistant_replies(workspace.data_root)
    save_tiny_model(texts, workspace.model_path, seed=seed)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(workspace.model_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(workspace.model_path)
    train_demo_saes(model, tokenizer, workspace.model_path, workspace.data_root, workspace.sae_config.parent, seed=seed,
                    log=lambda line: None, layers=TINY_SAE_LAYERS, width=64, steps=30)
    return workspace
