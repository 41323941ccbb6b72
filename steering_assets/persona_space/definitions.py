"""Persona space's Definitions: role vectors, the assistant axis, PCA, capping, drift and the capping evaluation."""

import dagster as dg

from steering_assets.core.settings import Settings
from steering_assets.persona_space.assets import build_persona_space_assets
from steering_assets.persona_space.jobs import persona_space_job, role_vector_job


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=build_persona_space_assets(settings.personas_per_run),
                          jobs=[role_vector_job(), persona_space_job()])
