"""Shared fixtures: the test world (a recorded demo run and a tiny model, built once per session), its tokenizer,
small rollout writers, and the real pretrained models."""

import json
import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Before torch loads OpenMP: spinning waits starve the daemons and servers some tests run beside (README, make demo).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
warnings.filterwarnings("ignore", module="dagster")

SHARED_PERSONA_NAMES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "persona_names"


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory):
    """A recorded `make demo` run of SmolLM2 (rollouts, scores, instructions, concepts), the demo's scenarios, and a
    tiny random-weight model with SAEs for mechanics: tests/world.py."""
    from tests.world import build_test_workspace

    return build_test_workspace(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="session")
def tokenizer(demo_workspace):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_workspace.model_path, local_files_only=True)


def response_row(label="pos", prompt_index=0, question_index=0, answer="An answer.", system_prompt="Be a pirate."):
    conversation = [{"role": "system", "content": system_prompt}] if system_prompt else []
    conversation += [{"role": "user", "content": f"Question {question_index}?"}, {"role": "assistant", "content": answer}]
    return {
        "system_prompt": system_prompt,
        "label": label,
        "prompt_index": prompt_index,
        "question_index": question_index,
        "question": f"Question {question_index}?",
        "conversation": conversation,
    }


def write_persona(data_root, kind_dir, name, rows, scores=None, model="model-a"):
    """Write one persona's responses (a list of dicts or raw lines) and, if given, its scores."""
    responses = Path(data_root) / model / kind_dir / "responses" / f"{name}.jsonl"
    responses.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    responses.write_text("".join(line + "\n" for line in lines))
    if scores is not None:
        score_path = Path(data_root) / model / kind_dir / "extract_scores" / f"{name}.json"
        score_path.parent.mkdir(parents=True, exist_ok=True)
        score_path.write_text(json.dumps(scores))
    return responses


@pytest.fixture
def shared_persona_names():
    roles, traits = SHARED_PERSONA_NAMES / "role_list.json", SHARED_PERSONA_NAMES / "trait_list.json"
    if not (roles.is_file() and traits.is_file()):
        pytest.skip("../shared/fixtures/persona_names is not present")
    return json.loads(roles.read_text()), json.loads(traits.read_text())


# Real pretrained models (SmolLM2-135M-Instruct, Gemma-3-270M), converted once per machine: tests/real_models.py.
from tests.real_models import gemma3, gemma3_loaded, smollm2, smollm2_loaded  # noqa: E402,F401
