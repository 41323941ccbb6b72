"""The code location: the concepts' Definitions merged, with the resources built from the settings.

Nothing is read or loaded at import: ``defs`` is lazy (``dagster.definitions``), so the settings are
read when Dagster loads the code location, torch and transformers load inside asset bodies, and the
data root is only scanned by the discovery sensors.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import dagster as dg

from steering_assets.core.progress import progress_logger
from steering_assets.core.settings import Settings
from steering_assets.features.definitions import definitions as feature_definitions
from steering_assets.persona_model.definitions import definitions as persona_model_definitions
from steering_assets.personas.definitions import definitions as persona_definitions
from steering_assets.persona_space.definitions import definitions as persona_space_definitions
from steering_assets.personas.jobs import persona_job_name  # noqa: F401 (the job names, for callers of the root)
from steering_assets.resources.defaults import build_resources
from steering_assets.resources.judge import JudgeResource
from steering_assets.steering.definitions import definitions as steering_definitions
from steering_assets.steering.jobs import steering_job_name  # noqa: F401
from steering_assets.vetting.definitions import definitions as vetting_definitions

CONCEPTS = (persona_model_definitions, persona_definitions, steering_definitions, persona_space_definitions, feature_definitions,
            vetting_definitions)


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
    *,
    settings: Settings | None = None,
) -> dg.Definitions:
    """Every concept's Definitions and the resources, from ``settings`` (default: ``Settings.from_env()``, now).

    The path and model arguments override the settings; ``steering_judge`` rates steered generations
    (``steering_judged_eval``): omitted, it is ``judge`` when that is given, else the
    PERSONA_STEERING_JUDGE_* settings (falling back to PERSONA_JUDGE_*).
    """
    from steering_assets.core.known_warnings import silence_known_warnings

    silence_known_warnings()  # the named, explained Dagster warnings that building the assets raises
    overrides = dict(data_root=data_root, artifact_root=artifact_root, model=model, concepts_root=concepts_root,
                     sae_config=sae_config, scenarios_root=scenarios_root, instructions_root=instructions_root)
    env_backed = settings is None and not any(v is not None for v in overrides.values())
    settings = (settings or Settings.from_env()).with_values(**overrides)
    return dg.Definitions.merge(
        *(concept(settings) for concept in CONCEPTS),
        dg.Definitions(
            resources=build_resources(settings, env_backed, judge, steering_judge),
            # One process per run: a model or tokenizer is loaded once and serves every step.
            executor=dg.in_process_executor,
            loggers={"console": dg.colored_console_logger, "progress": progress_logger},
        ),
    )


@functools.cache
def _default_definitions() -> dg.Definitions:
    return build_definitions(settings=Settings())


def asset_run_config(configs: Mapping[Sequence[str] | dg.AssetKey, dg.Config],
                     defs: dg.Definitions | None = None) -> dict[str, Any]:
    """Run config from each asset's key and its ``Config`` (e.g. ``SteeringVectorConfig(max_steps=12)``).

    The op that computes each asset is looked up in ``defs`` (default: the definitions with default
    settings), so a caller names assets, never Dagster's op names; only the fields the caller set are
    passed, so every other field keeps its default. Raises ``KeyError`` for an asset the definitions lack.
    """
    defs = defs or _default_definitions()
    ops: dict[str, Any] = {}
    for key, config in configs.items():
        asset_key = key if isinstance(key, dg.AssetKey) else dg.AssetKey(list(key))
        op_name = defs.resolve_assets_def(asset_key).node_def.name
        ops.setdefault(op_name, {"config": {}})["config"].update(config.model_dump(exclude_unset=True))
    return {"ops": ops}


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
