"""The steering job of each persona kind: vectors, activation vectors and their evaluations, in chunks."""

import dagster as dg

from steering_assets.formats.rollouts import PersonaKind


def steering_job_name(kind_name: str) -> str:
    return f"{kind_name}_steering"


def steering_job(kind: PersonaKind):
    return dg.define_asset_job(
        steering_job_name(kind.name),
        selection=dg.AssetSelection.assets(
            [kind.name, "steering_vector"], [kind.name, "persona_activation_vector"], [kind.name, "steering_eval"]
        ),
        description=f"Steering vectors for {kind.name}; a backfill trains {kind.column}s in chunks on one model load.",
    )
