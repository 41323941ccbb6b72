"""Vetting's Definitions: the per-trait assets, the job, the re-vetting schedule, the automation sensor
and the scenario discovery sensor, with the intervals and cron from the settings."""

import dagster as dg

from steering_assets.core.settings import Settings
from steering_assets.partitions.scenarios import build_scenario_discovery_sensor
from steering_assets.vetting.assets import build_vetting_assets
from steering_assets.vetting.jobs import build_automation_sensor, build_revetting_schedule, vetting_job


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=build_vetting_assets(),
        jobs=[vetting_job],
        schedules=[build_revetting_schedule(settings.revet_cron)],
        sensors=[build_automation_sensor(settings.automation_seconds),
                 build_scenario_discovery_sensor(settings.scenario_scan_seconds)],
    )
