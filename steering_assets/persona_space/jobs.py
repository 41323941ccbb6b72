"""The persona-space jobs: role vectors (backfilled over the role partitions) and the fan-ins over them."""

import dagster as dg

from steering_assets.persona_space.assets import (
    AXIS_KEY,
    CAPPING_EVAL_KEY,
    CAPPING_KEY,
    DRIFT_KEY,
    PCA_KEY,
    ROLE_VECTOR_KEY,
)

ROLE_VECTOR_JOB = "role_vectors"
PERSONA_SPACE_JOB = "persona_space"


def role_vector_job():
    return dg.define_asset_job(ROLE_VECTOR_JOB, selection=dg.AssetSelection.assets(ROLE_VECTOR_KEY),
                               description="Role vectors, K roles per run on one model load; then run persona_space.")


def persona_space_job():
    return dg.define_asset_job(
        PERSONA_SPACE_JOB, selection=dg.AssetSelection.assets(AXIS_KEY, PCA_KEY, CAPPING_KEY, DRIFT_KEY, CAPPING_EVAL_KEY),
        description="The fan-ins over every stored role vector: axis, PCA, capping config, drift and the capping evaluation.")
