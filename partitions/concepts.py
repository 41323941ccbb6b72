"""Concept partitions: one per ``<concept>.jsonl`` under PERSONA_CONCEPTS_ROOT, added by a sensor."""

from pathlib import Path

import dagster as dg

from resources.sae import ConceptSentences
from steering_assets.features.assets import CONCEPT_PARTITIONS
from steering_assets.features.concepts import discover_concepts


def new_concepts(instance: dg.DagsterInstance, root: Path | str) -> list[str]:
    existing = set(instance.get_dynamic_partitions(CONCEPT_PARTITIONS.name))
    return [name for name in discover_concepts(root) if name not in existing]


def sync_concept_partitions(instance: dg.DagsterInstance, root: Path | str) -> list[str]:
    added = new_concepts(instance, root)
    if added:
        instance.add_dynamic_partitions(CONCEPT_PARTITIONS.name, added)
    return added


@dg.sensor(
    name="concept_discovery_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every new <concept>.jsonl under PERSONA_CONCEPTS_ROOT becomes a concept partition.",
)
def concept_discovery_sensor(context: dg.SensorEvaluationContext, concepts: ConceptSentences) -> dg.SensorResult:
    added = new_concepts(context.instance, concepts.root)
    if not added:
        return dg.SensorResult(skip_reason="no new concept files")
    return dg.SensorResult(dynamic_partitions_requests=[CONCEPT_PARTITIONS.build_add_request(added)])
