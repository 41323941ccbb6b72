"""Scenario-trait partitions: one per readable ``{category}/{trait}`` folder under PERSONA_SCENARIOS_ROOT.

The ``scenario_discovery_sensor`` adds new folders and records a data version of
``vetting/scenario_files`` for every edited one (the eager vetting assets then re-vet that
trait); ``sync_scenario_partitions`` does the same scan once, for the CLI and the demo,
which run with no daemon. Folders that cannot be vetted are logged with what is missing.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from steering_assets.formats.scenarios import scan_scenario_root, scenario_data_version
from steering_assets.resources.scenarios import ScenarioSource

log = logging.getLogger(__name__)

VETTING_PARTITIONS = dg.DynamicPartitionsDefinition(name="scenario_traits")
SCENARIO_FILES_KEY = dg.AssetKey(["vetting", "scenario_files"])
# How often scenario folders are scanned by default (seconds); PERSONA_SCENARIO_SCAN_SECONDS sets it.
SCAN_INTERVAL = 60


@dataclass
class ScenarioScan:
    """What one scan found: trait keys to add, data versions to record, and folders that cannot be vetted."""

    new_keys: list[str] = field(default_factory=list)
    observations: list[dg.AssetObservation] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def scan_scenarios(instance: dg.DagsterInstance, root: Path | str, seen: dict[str, str]) -> ScenarioScan:
    """New ``{category}/{trait}`` folders and every folder whose files changed since ``seen`` (key -> data version).

    The sensor and ``sync_scenario_partitions`` both use it, so both add the same partitions and
    record the same data versions of ``vetting/scenario_files``.
    """
    scan = scan_scenario_root(root)
    existing = set(instance.get_dynamic_partitions(VETTING_PARTITIONS.name))
    result = ScenarioScan(seen=dict(seen), skipped=list(scan.skipped))
    for folder in scan.traits:
        key = f"{folder.parent.name}/{folder.name}"
        if key not in existing:
            result.new_keys.append(key)
        version = scenario_data_version(folder)
        if result.seen.get(key) != version:
            result.seen[key] = version
            result.observations.append(
                dg.AssetObservation(asset_key=SCENARIO_FILES_KEY, partition=key, tags={"dagster/data_version": version}))
    return result


def sync_scenario_partitions(instance: dg.DagsterInstance, root: Path | str) -> list[str]:
    """What one sensor tick does, directly against an instance (CLI and demo, no daemon): add a partition for
    every trait folder that can be vetted, record each folder's data version, log each folder that cannot."""
    scan = scan_scenarios(instance, root, {})
    for folder, reason in scan.skipped:
        log.warning("%s: not offered as a scenario trait: %s", folder, reason)
    if scan.new_keys:
        instance.add_dynamic_partitions(VETTING_PARTITIONS.name, scan.new_keys)
    for observation in scan.observations:
        instance.report_runless_asset_event(observation)
    return scan.new_keys


def build_scenario_discovery_sensor(minimum_interval_seconds: int = SCAN_INTERVAL) -> dg.SensorDefinition:
    """The sensor that turns new scenario folders into partitions and edits into data versions."""

    @dg.sensor(name="scenario_discovery_sensor", minimum_interval_seconds=minimum_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="New {category}/{trait} folders become partitions; edited files get a new data version.")
    def scenario_discovery_sensor(context: dg.SensorEvaluationContext, scenarios: ScenarioSource) -> dg.SensorResult:
        scan = scan_scenarios(context.instance, scenarios.root, json.loads(context.cursor) if context.cursor else {})
        for folder, reason in scan.skipped:
            context.log.warning(f"{folder}: not offered as a scenario trait: {reason}")
        requests = [VETTING_PARTITIONS.build_add_request(scan.new_keys)] if scan.new_keys else []
        return dg.SensorResult(dynamic_partitions_requests=requests, asset_events=scan.observations,
                               cursor=json.dumps(scan.seen),
                               skip_reason=None if requests or scan.observations else "no new or changed scenario files")

    return scenario_discovery_sensor


scenario_discovery_sensor = build_scenario_discovery_sensor()
