"""Concept partitions: one per ``<concept>.jsonl`` or ``<concept>.csv`` under PERSONA_CONCEPTS_ROOT, added by a sensor.

Any other entry of the root (another file type, a folder, a name that is not a plain
identifier, a concept with both a ``.jsonl`` and a ``.csv``) is listed in the sensor's log
and in its skip reason, never passed over in silence.
"""

from pathlib import Path

import dagster as dg

from steering_assets.formats.concepts import ConceptDiscovery, survey_concepts
from steering_assets.resources.concepts import ConceptSentences

CONCEPT_PARTITIONS = dg.DynamicPartitionsDefinition(name="concepts")


def scan_concepts(instance: dg.DagsterInstance, root: Path | str) -> tuple[list[str], ConceptDiscovery]:
    """Concept names not yet partitions, and the survey of the root (with the files it skipped)."""
    survey = survey_concepts(root)
    existing = set(instance.get_dynamic_partitions(CONCEPT_PARTITIONS.name))
    return [name for name in survey.concepts if name not in existing], survey


def new_concepts(instance: dg.DagsterInstance, root: Path | str) -> list[str]:
    return scan_concepts(instance, root)[0]


def sync_concept_partitions(instance: dg.DagsterInstance, root: Path | str) -> list[str]:
    added = new_concepts(instance, root)
    if added:
        instance.add_dynamic_partitions(CONCEPT_PARTITIONS.name, added)
    return added


@dg.sensor(
    name="concept_discovery_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Every new <concept>.jsonl or <concept>.csv under PERSONA_CONCEPTS_ROOT becomes a concept partition; "
        "other files in the root are listed in the log."
    ),
)
def concept_discovery_sensor(context: dg.SensorEvaluationContext, concepts: ConceptSentences) -> dg.SensorResult:
    added, survey = scan_concepts(context.instance, concepts.root)
    skipped = survey.skipped_lines()
    for line in skipped:
        context.log.warning(f"not a concept partition: {line}")
    if not added:
        reason = "no new concept files"
        if skipped:
            reason += f"; {len(skipped)} other entries not read: " + "; ".join(skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
        return dg.SensorResult(skip_reason=reason)
    return dg.SensorResult(dynamic_partitions_requests=[CONCEPT_PARTITIONS.build_add_request(added)])
