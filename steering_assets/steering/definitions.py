"""Steering's Definitions: per kind, the trained and activation vectors, their evaluations and the job."""

import dagster as dg

from steering_assets.core.settings import Settings
from steering_assets.formats.rollouts import PERSONA_KINDS
from steering_assets.steering.assets import build_steering_assets
from steering_assets.steering.jobs import steering_job


def definitions(settings: Settings) -> dg.Definitions:
    assets: list = []
    for kind in PERSONA_KINDS.values():
        assets += build_steering_assets(kind, settings.personas_per_run)
    return dg.Definitions(assets=assets, jobs=[steering_job(kind) for kind in PERSONA_KINDS.values()])
