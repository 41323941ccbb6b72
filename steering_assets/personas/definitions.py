"""The personas' Definitions: generated and scored rollouts, persona datasets and training splits per kind,
the baselines, their jobs and the discovery sensors of rollout and instruction files."""

import dagster as dg

from steering_assets.core.settings import Settings
from steering_assets.formats.rollouts import PERSONA_KINDS
from steering_assets.partitions.personas import instruction_discovery_sensor, persona_discovery_sensor
from steering_assets.personas.assets import build_baseline_assets, build_persona_assets
from steering_assets.personas.generation_assets import build_generation_assets
from steering_assets.personas.jobs import persona_datasets_job


def definitions(settings: Settings) -> dg.Definitions:
    assets: list = []
    for kind in PERSONA_KINDS.values():
        assets += build_generation_assets(kind) + build_persona_assets(kind, settings.datasets_per_run)
    return dg.Definitions(
        assets=assets + build_baseline_assets(),
        jobs=[persona_datasets_job(kind) for kind in PERSONA_KINDS.values()],
        sensors=[persona_discovery_sensor, instruction_discovery_sensor],
    )
