"""The features' Definitions: per-concept sentence features, SAE rankings, classifier datasets and
classifiers, their job and the concept discovery sensor."""

import dagster as dg

from steering_assets.core.settings import Settings
from steering_assets.features.assets import FEATURE_ASSETS
from steering_assets.features.jobs import concept_features_job
from steering_assets.partitions.concepts import concept_discovery_sensor


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=FEATURE_ASSETS, jobs=[concept_features_job], sensors=[concept_discovery_sensor])
