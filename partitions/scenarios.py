"""Scenario-trait partitions without the daemon: one per ``{category}/{trait}`` folder under PERSONA_SCENARIOS_ROOT.

The ``scenario_discovery_sensor`` does the same on a schedule (and records data versions);
this is for the CLI and the demo, which run with no daemon.
"""

import logging
from pathlib import Path

import dagster as dg

from steering_assets.vetting.assets import VETTING_PARTITIONS
from steering_assets.vetting.scenarios import scan_scenario_root

log = logging.getLogger(__name__)


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
