"""The persona model's Definitions: the cached-conversion asset every model-using asset depends on."""

import dagster as dg

from steering_assets.core.settings import Settings
from steering_assets.persona_model.assets import MODEL_ASSETS


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=MODEL_ASSETS)
