"""Vetting's job, its re-vetting schedule and the automation sensor that re-vets an edited trait."""

import dagster as dg

from steering_assets.partitions.scenarios import SCENARIO_FILES_KEY, VETTING_PARTITIONS
from steering_assets.vetting.assets import GROUP

AUTOMATION_SENSOR = "default_automation_condition_sensor"
# Weekly (Monday 06:00) and every 30 s unless PERSONA_REVET_CRON / PERSONA_AUTOMATION_SECONDS say otherwise.
REVET_CRON = "0 6 * * 1"
AUTOMATION_INTERVAL = 30

vetting_job = dg.define_asset_job(
    "vetting", selection=dg.AssetSelection.groups(GROUP) - dg.AssetSelection.assets(SCENARIO_FILES_KEY),
    description="Vet every stage of one trait's scenarios.")


def build_revetting_schedule(cron: str = REVET_CRON) -> dg.ScheduleDefinition:
    @dg.schedule(cron_schedule=cron, job=vetting_job, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Re-vet every trait (cached judgments make unchanged items free; items that failed with "
                             "an error or had no score are asked again).")
    def revetting_schedule(context: dg.ScheduleEvaluationContext):
        for key in context.instance.get_dynamic_partitions(VETTING_PARTITIONS.name):
            yield dg.RunRequest(run_key=f"{key}@{context.scheduled_execution_time:%Y-%m-%d}", partition_key=key)

    return revetting_schedule


def build_automation_sensor(minimum_interval_seconds: int = AUTOMATION_INTERVAL) -> dg.AutomationConditionSensorDefinition:
    # Dagster's own default automation sensor starts stopped, so the eager conditions of the vetting
    # assets would never fire in `make ui`; this one replaces it (same name) and runs by default.
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR, target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Evaluates every asset's automation condition: an edited scenario file re-vets its trait.",
    )


revetting_schedule = build_revetting_schedule()
