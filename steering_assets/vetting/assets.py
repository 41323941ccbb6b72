"""Dagster wrappers for vetting: per-trait assets, a discovery sensor, re-vetting on a schedule and on edits."""

import json
import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from resources.judge import JudgeResource
from resources.language_model import LanguageModelResource
from resources.storage import ArtifactStorage
from steering_assets.asset_helpers import reported_as_failure
from steering_assets.metadata import md_table

VETTING_PARTITIONS = dg.DynamicPartitionsDefinition(name="scenario_traits")
GROUP = "vetting"
SCENARIO_FILES_KEY = dg.AssetKey(["vetting", "scenario_files"])
PASS_CHECK = "pass_rate_meets_bar"
# Weekly by default (Monday 06:00); PERSONA_REVET_CRON overrides it.
REVET_CRON = os.environ.get("PERSONA_REVET_CRON", "0 6 * * 1")


class ScenarioSource(dg.ConfigurableResource):
    """``{root}/{category}/{trait}/{positive,negative,definition}.txt`` (env PERSONA_SCENARIOS_ROOT)."""

    root: str = Field(description="Folder of scenario categories (env PERSONA_SCENARIOS_ROOT).")


class VettingConfig(dg.Config):
    pos_threshold: float = Field(default=60.0, description="A positive item passes at score >= this.")
    neg_threshold: float = Field(default=40.0, description="A negative item passes at score <= this.")
    pass_bar: float = Field(default=1.0, ge=0, le=1, description="The check fails below this pass rate (goal: 100%).")


class ResponsesConfig(dg.Config):
    max_new_tokens: int = Field(default=50, gt=0)
    do_sample: bool = Field(default=False, description="Seeded sampling instead of greedy decoding.")
    temperature: float = Field(default=0.8, gt=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    seed: int = 0


def _report_result(context, result, bar: float) -> dg.MaterializeResult:
    from steering_assets.vetting.pipeline import pass_rate

    report = result.details
    failing = [(r["polarity"], r["idx"], "error" if r.get("error") else r["score"]) for r in report["results"]
               if r["idx"] in report["failed_indices"][r["polarity"]]]
    rate = pass_rate(report)
    return dg.MaterializeResult(
        metadata={
            "pass_rate": dg.MetadataValue.float(rate),
            "summary": dg.MetadataValue.json(report["summary"]),
            "failing_items": dg.MetadataValue.md(md_table(["polarity", "index", "score"], failing or [("-", "-", "all passed")])),
            "path": dg.MetadataValue.path(str(result.folder)),
            "reused_existing_artifact": result.skipped,
        },
        check_results=[dg.AssetCheckResult(
            check_name=PASS_CHECK, passed=rate >= bar,
            description=f"pass rate {rate:.0%} (bar {bar:.0%}); {len(failing)} failing item(s) to fix",
        )],
    )


def _folder(context, scenarios: ScenarioSource) -> Path:
    from steering_assets.vetting.pipeline import trait_folder

    return trait_folder(Path(scenarios.root), context.partition_key)


@dg.observable_source_asset(key=SCENARIO_FILES_KEY, partitions_def=VETTING_PARTITIONS, group_name=GROUP,
                            description="Scenario files of each trait; the data version is a hash of the three files.")
def scenario_files(context: dg.OpExecutionContext, scenarios: ScenarioSource) -> dg.DataVersionsByPartition:
    from steering_assets.vetting.pipeline import scenario_files_digest, trait_folder

    keys = context.instance.get_dynamic_partitions(VETTING_PARTITIONS.name)
    return dg.DataVersionsByPartition({k: scenario_files_digest(trait_folder(Path(scenarios.root), k))[:32] for k in keys})


def _judge_stage(context, config: VettingConfig, storage: ArtifactStorage, judge: JudgeResource, scenarios: ScenarioSource,
                 vet) -> dg.MaterializeResult:
    """Run one judge stage (``vet_scenarios`` or ``vet_responses``) for the run's trait."""
    from steering_assets.vetting.scenarios import Thresholds

    store = storage.store()
    with reported_as_failure(context.partition_key):
        backend = judge.judge(store.folder("vetting", "judgments"))
        result = vet(_folder(context, scenarios), store, backend, judge.judge_name, Thresholds(config.pos_threshold, config.neg_threshold))
    return _report_result(context, result, config.pass_bar)


def _vetting_asset(name: str, deps: list, description: str):
    return dg.asset(
        key=["vetting", name], deps=deps, partitions_def=VETTING_PARTITIONS, group_name=GROUP, code_version="1",
        automation_condition=dg.AutomationCondition.eager(),  # an edited scenario or definition re-vets its trait
        check_specs=[dg.AssetCheckSpec(PASS_CHECK, asset=dg.AssetKey(["vetting", name]), description="Pass rate at or above the bar.")],
        description=description,
    )


@_vetting_asset("scenario_vetting", [SCENARIO_FILES_KEY], "Stage 0: the judge scores whether each scenario sets up the trait (positive) or its opposite (negative).")
def scenario_vetting(context: dg.AssetExecutionContext, config: VettingConfig, storage: ArtifactStorage, judge: JudgeResource,
                     scenarios: ScenarioSource) -> dg.MaterializeResult:
    from steering_assets.vetting.pipeline import vet_scenarios

    return _judge_stage(context, config, storage, judge, scenarios, vet_scenarios)


@dg.asset(key=["vetting", "scenario_responses"], deps=[SCENARIO_FILES_KEY], partitions_def=VETTING_PARTITIONS, group_name=GROUP,
          pool="gpu", code_version="1", automation_condition=dg.AutomationCondition.eager(),
          description="Stage 1: a base model continues every scenario (no chat template), batched, greedy or seeded sampling.")
def scenario_responses(context: dg.AssetExecutionContext, config: ResponsesConfig, storage: ArtifactStorage,
                       scenarios: ScenarioSource, language_model: LanguageModelResource) -> dg.MaterializeResult:
    from steering_assets.vetting.pipeline import generate_responses

    with reported_as_failure(context.partition_key):
        result = generate_responses(_folder(context, scenarios), storage.store(), language_model.get_model(),
                                    language_model.get_tokenizer(), language_model.model_name, **config.model_dump())
    examples = json.loads((result.folder / "responses.json").read_text())
    return dg.MaterializeResult(metadata={
        "completions": dg.MetadataValue.json(result.details["count"]),
        "examples": dg.MetadataValue.md(md_table(["polarity", "completion"], [(s, t[:120]) for s in examples for t in examples[s][:2]])),
        "path": dg.MetadataValue.path(str(result.folder)), "reused_existing_artifact": result.skipped,
    })


@_vetting_asset("response_vetting", [dg.AssetKey(["vetting", "scenario_responses"])], "Stage 2: the judge scores each completion against the definition; writes response_scores.json.")
def response_vetting(context: dg.AssetExecutionContext, config: VettingConfig, storage: ArtifactStorage, judge: JudgeResource,
                     scenarios: ScenarioSource) -> dg.MaterializeResult:
    from steering_assets.vetting.pipeline import vet_responses

    return _judge_stage(context, config, storage, judge, scenarios, vet_responses)


vetting_job = dg.define_asset_job("vetting", selection=dg.AssetSelection.groups(GROUP) - dg.AssetSelection.assets(SCENARIO_FILES_KEY),
                                  description="Vet every stage of one trait's scenarios.")


@dg.schedule(cron_schedule=REVET_CRON, job=vetting_job, default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Re-vet every trait (cached judgments make unchanged items free).")
def revetting_schedule(context: dg.ScheduleEvaluationContext):
    for key in context.instance.get_dynamic_partitions(VETTING_PARTITIONS.name):
        yield dg.RunRequest(run_key=f"{key}@{context.scheduled_execution_time:%Y-%m-%d}", partition_key=key)


@dg.sensor(name="scenario_discovery_sensor", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="New {category}/{trait} folders become partitions; edited files get a new data version.")
def scenario_discovery_sensor(context: dg.SensorEvaluationContext, scenarios: ScenarioSource) -> dg.SensorResult:
    from steering_assets.vetting.pipeline import scenario_files_digest
    from steering_assets.vetting.scenarios import discover_traits

    seen = json.loads(context.cursor) if context.cursor else {}
    existing = set(context.instance.get_dynamic_partitions(VETTING_PARTITIONS.name))
    new, observations = [], []
    for folder in discover_traits(scenarios.root):
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


VETTING_ASSETS = [scenario_files, scenario_vetting, scenario_responses, response_vetting]
