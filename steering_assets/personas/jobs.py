"""The persona-dataset job of each persona kind (backfill it to process every role or trait)."""

import dagster as dg

from steering_assets.deployment.tags import cpu_run_tags
from steering_assets.formats.rollouts import PersonaKind


def persona_job_name(kind_name: str) -> str:
    return f"{kind_name}_persona_datasets"


def persona_datasets_job(kind: PersonaKind):
    return dg.define_asset_job(
        persona_job_name(kind.name),
        selection=dg.AssetSelection.assets([kind.name, "persona_dataset"], [kind.name, "persona_training_split"]),
        description=f"Rollouts to training splits for {kind.name}; backfill it to process every {kind.column}.",
        # CPU work: routed away from the GPU workers and GPU pods (deploy/celery, deploy/k8s).
        tags=cpu_run_tags(),
    )
