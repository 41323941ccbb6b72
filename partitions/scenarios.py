"""Scenario-trait partitions: one per readable ``{category}/{trait}`` folder under PERSONA_SCENARIOS_ROOT.

The ``scenario_discovery_sensor`` adds new folders and records a data version of
``vetting/scenario_files`` for every edited one (the eager vetting assets then re-vet that
trait); ``sync_scenario_partitions`` does the same scan once, for the CLI and the demo,
which run with no daemon. Folders that cannot be vetted are logged with what is missing.
"""

import json
import logging
import os
from pathlib import Path

import dagster as dg

from steering_assets.resources.scenarios import ScenarioSource
from steering_assets.formats.scenarios import scan_scenario_root

log = logging.getLogger(__name__)

VETTING_PARTITIONS = dg.DynamicPartitionsDefinition(name="scenario_traits")
SCENARIO_FILES_KEY = dg.AssetKey(["vetting", "scenario_files"])
# How often scenario folders are scanned (seconds).
SCAN_INTERVAL = int(os.environ.get("PERSONA_SCENARIO_SCAN_SECONDS", "60"))


def sync_scenario_partitions(instance: dg.DagsterInstance, root: Path | str) -> list[str]:
    """Add a partition for every trait folder that can be vetted; log each folder that cannot, with what is missing."""
    scan = scan_scenario_root(root)
    for folder, reason in scan.skipped:
        log.warning("%s: not offered as a scenario trait: %s", folder, reason)
    existing = set(instance.get_dynamic_partitions(VETTING_PARTITIONS.name))
    added = [key for key in (f"{f.parent.name}/{f.name}" for f in scan.traits) if key not in existing]
    if added:
        instance.add_dynamic_partitions(VETTING_PARTITIONS.name, added)
    return added


@dg.sensor(name="scenario_discovery_sensor", minimum_interval_seconds=SCAN_INTERVAL, default_status=dg.DefaultSensorStatus.RUNNING,
           description="New {category}/{trait} folders become partitions; edited files get a new data version.")
def scenario_discovery_sensor(context: dg.SensorEvaluationContext, scenarios: ScenarioSource) -> dg.SensorResult:
    from steering_assets.formats.scenarios import scan_scenario_root, scenario_files_digest

    seen = json.loads(context.cursor) if context.cursor else {}
    existing = set(context.instance.get_dynamic_partitions(VETTING_PARTITIONS.name))
    new, observations = [], []
    scan = scan_scenario_root(scenarios.root)
    for folder, reason in scan.skipped:
        context.log.warning(f"{folder}: not offered as a scenario trait: {reason}")
    for folder in scan.traits:
        key = f"{folder.parent.name}/{folder.name}"
        if key not in existing:
            new.append(key)
        version = scenario_files_digest(folder)[:32]
        if seen.get(key) != version:
            seen[key] = version
            observations.append(dg.AssetObservation(asset_key=SCENARIO_FILES_KEY, partition=key, tags={"dagster/data_version": version}))
    requests = [VETTING_PARTITIONS.build_add_request(new)] if new else []
    return dg.SensorResult(dynamic_partitions_requests=requests, asset_events=observations, cursor=json.dumps(seen),
                           skip_reason=None if requests or observations else "no new or changed scenario files")
