"""The concept-features job: sentence features to cross-validated classifiers, per concept."""

import dagster as dg

from steering_assets.features.assets import GROUP

concept_features_job = dg.define_asset_job(
    "concept_features", selection=dg.AssetSelection.groups(GROUP),
    description="Sentence features to cross-validated classifiers, per concept.")
