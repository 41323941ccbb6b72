"""The code location: every asset, check, job, sensor and resource of the platform.

Nothing heavy happens at import: torch and transformers load inside asset bodies,
and the data root is only scanned by the discovery sensor.
"""

from __future__ import annotations

import warnings

import dagster as dg

# Partitioned asset checks and data-versioned observations are marked preview/beta in
# this Dagster release; the warnings say nothing a user can act on.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from steering_assets.partitions.concepts import concept_discovery_sensor  # noqa: E402
from steering_assets.partitions.personas import instruction_discovery_sensor, persona_discovery_sensor  # noqa: E402
from steering_assets.partitions.scenarios import scenario_discovery_sensor  # noqa: E402
from steering_assets.resources.concepts import ConceptSentences  # noqa: E402
from steering_assets.resources.encoder import SentenceEncoderResource  # noqa: E402
from steering_assets.resources.instructions import InstructionSource  # noqa: E402
from steering_assets.resources.judge import JudgeResource  # noqa: E402
from steering_assets.resources.language_model import LanguageModelResource, ModelSource  # noqa: E402
from steering_assets.resources.rollout_generation import RolloutGeneratorResource  # noqa: E402
from steering_assets.resources.rollouts import PersonaRollouts  # noqa: E402
from steering_assets.resources.sae import SAEResource  # noqa: E402
from steering_assets.resources.scenarios import ScenarioSource  # noqa: E402
from steering_assets.resources.storage import ArtifactStorage  # noqa: E402
from steering_assets.core.progress import progress_logger  # noqa: E402
from steering_assets.deployment.tags import cpu_run_tags  # noqa: E402
from steering_assets.features.assets import FEATURE_ASSETS  # noqa: E402
from steering_assets.formats.rollouts import PERSONA_KINDS  # noqa: E402
from steering_assets.persona_model.assets import MODEL_ASSETS  # noqa: E402
from steering_assets.personas.assets import build_baseline_assets, build_persona_assets  # noqa: E402
from steering_assets.personas.generation_assets import build_generation_assets  # noqa: E402
from steering_assets.steering.assets import build_steering_assets  # noqa: E402
from steering_assets.vetting.assets import (  # noqa: E402
    VETTING_ASSETS,
    automation_sensor,
    revetting_schedule,
    vetting_job,
)


def persona_job_name(kind_name: str) -> str:
    return f"{kind_name}_persona_datasets"


def steering_job_name(kind_name: str) -> str:
    return f"{kind_name}_steering"


def default_language_model(source: ModelSource) -> LanguageModelResource:
    """The target model; PERSONA_DEVICE, PERSONA_DEVICE_MAP ("auto" shards it over the run's GPUs), PERSONA_DTYPE
    and PERSONA_QUANTIZATION ("8bit"/"4bit", needs bitsandbytes) set how it is loaded when present."""
    import os

    return LanguageModelResource(
        source=source,
        device=os.environ.get("PERSONA_DEVICE") or "auto",
        device_map=os.environ.get("PERSONA_DEVICE_MAP") or None,
        dtype=os.environ.get("PERSONA_DTYPE") or "auto",
        quantization=os.environ.get("PERSONA_QUANTIZATION") or None,
    )


def default_rollout_generator(source: ModelSource) -> RolloutGeneratorResource:
    """PERSONA_GENERATION_BACKEND "local" (default: the persona model, loaded in the run) or "openai" (PERSONA_GENERATION_BASE_URL,
    PERSONA_GENERATION_MODEL, key from OPENAI_API_KEY); PERSONA_DEVICE and PERSONA_DTYPE as for the language model."""
    import os

    backend = os.environ.get("PERSONA_GENERATION_BACKEND") or "local"
    return RolloutGeneratorResource(
        source=source, backend=backend,
        base_url=os.environ.get("PERSONA_GENERATION_BASE_URL") or None,
        model=os.environ.get("PERSONA_GENERATION_MODEL") or None,
        api_key=dg.EnvVar("OPENAI_API_KEY") if backend == "openai" and os.environ.get("OPENAI_API_KEY") else None,
        device=os.environ.get("PERSONA_DEVICE") or "auto", dtype=os.environ.get("PERSONA_DTYPE") or "auto",
    )


def default_judge(prefix: str = "PERSONA_JUDGE") -> JudgeResource:
    """PERSONA_JUDGE_BACKEND picks "openai" (key from OPENAI_API_KEY, optional OPENAI_BASE_URL), "local" (the
    model in PERSONA_JUDGE_LOCAL_MODEL, from its next-token logprobs) or "likelihood" (that model's likelihood
    ratios, ``vetting/likelihood.py``).

    ``prefix="PERSONA_STEERING_JUDGE"``: the judge of the steering evaluation; each of its
    settings that is unset falls back to the PERSONA_JUDGE one, so one judge serves both by default.
    """
    import os

    def setting(name: str, default: str | None = None) -> str | None:
        return os.environ.get(f"{prefix}_{name}") or os.environ.get(f"PERSONA_JUDGE_{name}") or default

    number_scale = setting("NUMBER_SCALE", "auto")
    backend = setting("BACKEND", "openai")
    if backend in ("local", "likelihood"):
        return JudgeResource(backend=backend, local_model=setting("LOCAL_MODEL"), number_scale=number_scale)
    return JudgeResource(
        backend="openai",
        model=setting("MODEL", "gpt-4.1-mini"),
        api_key=dg.EnvVar("OPENAI_API_KEY"),
        base_url=os.environ.get("OPENAI_BASE_URL") or None,
        number_scale=number_scale,
    )


def build_definitions(
    data_root: str | None = None,
    artifact_root: str | None = None,
    model: str | None = None,
    concepts_root: str | None = None,
    sae_config: str | None = None,
    scenarios_root: str | None = None,
    judge: JudgeResource | None = None,
    steering_judge: JudgeResource | None = None,
    instructions_root: str | None = None,
) -> dg.Definitions:
    """Definitions with resources from the arguments, or from environment variables when omitted.

    ``steering_judge`` rates steered generations (``steering_judged_eval``); omitted, it is ``judge``
    when that is given, else the PERSONA_STEERING_JUDGE_* settings (falling back to PERSONA_JUDGE_*).
    """
    import os

    assets: list = list(MODEL_ASSETS)
    jobs = []
    for kind_name, kind in PERSONA_KINDS.items():
        assets += build_generation_assets(kind)
        assets += build_persona_assets(kind)
        assets += build_steering_assets(kind)
        jobs.append(
            dg.define_asset_job(
                persona_job_name(kind_name),
                selection=dg.AssetSelection.assets([kind_name, "persona_dataset"], [kind_name, "persona_training_split"]),
                description=f"Rollouts to training splits for {kind_name}; backfill it to process every {kind.column}.",
                # CPU work: routed away from the GPU workers and GPU pods (deploy/celery, deploy/k8s).
                tags=cpu_run_tags(),
            )
        )
        jobs.append(
            dg.define_asset_job(
                steering_job_name(kind_name),
                selection=dg.AssetSelection.assets(
                    [kind_name, "steering_vector"], [kind_name, "persona_activation_vector"], [kind_name, "steering_eval"]
                ),
                description=f"Steering vectors for {kind_name}; a backfill trains {kind.column}s in chunks on one model load.",
            )
        )
    assets += build_baseline_assets()
    assets += FEATURE_ASSETS
    assets += VETTING_ASSETS
    jobs.append(vetting_job)
    jobs.append(dg.define_asset_job("concept_features", selection=dg.AssetSelection.groups("concept_features"),
                                    description="Sentence features to cross-validated classifiers, per concept."))
    source = ModelSource(model_name_or_path=model or dg.EnvVar("PERSONA_MODEL"))
    resources = {
        "rollouts": PersonaRollouts(data_root=data_root or dg.EnvVar("PERSONA_DATA_ROOT")),
        "storage": ArtifactStorage(root=artifact_root or dg.EnvVar("PERSONA_ARTIFACT_ROOT")),
        "model_source": source,
        "language_model": default_language_model(source),
        "rollout_generator": default_rollout_generator(source),
        "instructions": InstructionSource(root=instructions_root or os.environ.get("PERSONA_INSTRUCTIONS_ROOT") or None),
        "sentence_encoder": SentenceEncoderResource(),
        "saes": SAEResource(config_path=sae_config or dg.EnvVar("PERSONA_SAE_CONFIG")),
        "concepts": ConceptSentences(root=concepts_root or dg.EnvVar("PERSONA_CONCEPTS_ROOT")),
        "scenarios": ScenarioSource(root=scenarios_root or dg.EnvVar("PERSONA_SCENARIOS_ROOT")),
        "judge": judge or default_judge(),
        "steering_judge": steering_judge or judge or default_judge("PERSONA_STEERING_JUDGE"),
    }
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        sensors=[persona_discovery_sensor, instruction_discovery_sensor, concept_discovery_sensor, scenario_discovery_sensor, automation_sensor],
        schedules=[revetting_schedule],
        resources=resources,
        # One process per run: a model or tokenizer is loaded once and serves every step.
        executor=dg.in_process_executor,
        loggers={"console": dg.colored_console_logger, "progress": progress_logger},
    )


defs = build_definitions()
