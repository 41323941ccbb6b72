"""Every resource of the code location, built from ``Settings`` (``steering_assets.core.settings``).

``env_backed``: the settings came from the environment, so the roots are passed as ``dagster.EnvVar``
(the UI shows which variable each comes from, and a run process resolves it from its own environment);
otherwise their values are passed as they are. API keys are always ``EnvVar("OPENAI_API_KEY")``.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from steering_assets.core.settings import Settings, env_name
from steering_assets.resources.concepts import ConceptSentences
from steering_assets.resources.encoder import SentenceEncoderResource
from steering_assets.resources.instructions import ConversationSource, InstructionSource
from steering_assets.resources.judge import JudgeResource
from steering_assets.resources.language_model import LanguageModelResource, ModelSource
from steering_assets.resources.rollout_generation import RolloutGeneratorResource
from steering_assets.resources.rollouts import PersonaRollouts
from steering_assets.resources.sae import SAEResource
from steering_assets.resources.scenarios import ScenarioSource
from steering_assets.resources.storage import ArtifactStorage

def default_language_model(source: ModelSource, settings: Settings) -> LanguageModelResource:
    """The target model, loaded as PERSONA_DEVICE, PERSONA_DEVICE_MAP, PERSONA_DTYPE and PERSONA_QUANTIZATION say."""
    return LanguageModelResource(source=source, device=settings.device, device_map=settings.device_map,
                                 dtype=settings.dtype, quantization=settings.quantization)


def default_rollout_generator(source: ModelSource, settings: Settings) -> RolloutGeneratorResource:
    """PERSONA_GENERATION_BACKEND "local" (the persona model, loaded in the run) or "openai"
    (PERSONA_GENERATION_BASE_URL, PERSONA_GENERATION_MODEL, key from OPENAI_API_KEY)."""
    # A vLLM server takes any key: without OPENAI_API_KEY the client sends a placeholder.
    keyed = settings.generation_backend == "openai" and bool(os.environ.get("OPENAI_API_KEY"))
    return RolloutGeneratorResource(
        source=source, backend=settings.generation_backend, base_url=settings.generation_base_url,
        model=settings.generation_model, api_key=dg.EnvVar("OPENAI_API_KEY") if keyed else None,
        device=settings.device, dtype=settings.dtype,
    )


def default_judge(settings: Settings, steering: bool = False) -> JudgeResource:
    """The judge PERSONA_JUDGE_* describe; ``steering=True``: the steering evaluation's, each PERSONA_STEERING_JUDGE_*
    setting falling back to its PERSONA_JUDGE_* one, so one judge serves both by default."""
    backend = settings.judge_setting("backend", steering)
    number_scale = settings.judge_setting("number_scale", steering)
    if backend in ("local", "likelihood"):
        return JudgeResource(backend=backend, local_model=settings.judge_setting("local_model", steering),
                             number_scale=number_scale)
    return JudgeResource(backend="openai", model=settings.judge_setting("model", steering),
                         api_key=dg.EnvVar("OPENAI_API_KEY"), base_url=settings.openai_base_url,
                         number_scale=number_scale)


def build_resources(settings: Settings, env_backed: bool, judge: JudgeResource | None = None,
                    steering_judge: JudgeResource | None = None) -> dict[str, Any]:
    def root(name: str) -> Any:
        value = getattr(settings, name)
        return dg.EnvVar(env_name(name)) if env_backed or value is None else value

    source = ModelSource(model_name_or_path=root("model"))
    return {
        "rollouts": PersonaRollouts(data_root=root("data_root")),
        "storage": ArtifactStorage(root=root("artifact_root")),
        "model_source": source,
        "language_model": default_language_model(source, settings),
        "rollout_generator": default_rollout_generator(source, settings),
        "instructions": InstructionSource(root=settings.instructions_root, model_name=settings.rollout_model_name),
        "conversations": ConversationSource(root=settings.conversations_root),
        "sentence_encoder": SentenceEncoderResource(),
        "saes": SAEResource(config_path=root("sae_config")),
        "concepts": ConceptSentences(root=root("concepts_root")),
        "scenarios": ScenarioSource(root=root("scenarios_root")),
        "judge": judge or default_judge(settings),
        "steering_judge": steering_judge or judge or default_judge(settings, steering=True),
    }
