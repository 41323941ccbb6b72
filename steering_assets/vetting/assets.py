"""Dagster wrappers for vetting: the per-trait assets and their checks (the job, schedule and sensor: jobs.py)."""

import json
from pathlib import Path

import dagster as dg
from pydantic import Field

from steering_assets.core.asset_results import reported_as_failure
from steering_assets.core.metadata import md_table, png_markdown
from steering_assets.partitions.scenarios import SCENARIO_FILES_KEY, VETTING_PARTITIONS
from steering_assets.persona_model.assets import PERSONA_MODEL_KEY
from steering_assets.resources.judge import JudgeResource
from steering_assets.resources.language_model import LanguageModelResource
from steering_assets.resources.scenarios import ScenarioSource
from steering_assets.resources.storage import ArtifactStorage

GROUP = "vetting"
PASS_CHECK = "pass_rate_meets_bar"
CALIBRATION_CHECK = "judge_calibration"
_ITEM_TEXT = 90


class VettingConfig(dg.Config):
    pos_threshold: float = Field(default=60.0, description="A positive item passes at score >= this.")
    neg_threshold: float = Field(default=40.0, description="A negative item passes at score <= this.")
    pass_bar: float = Field(default=1.0, ge=0, le=1, description="The check fails below this pass rate (goal: 100%).")
    min_agreement: float = Field(default=0.8, ge=0, le=1,
                                 description="judge_calibration WARNs when agreement with known verdicts is below this.")
    max_drift: float = Field(default=10.0, ge=0,
                             description="judge_calibration WARNs when scores moved more than this many points on average "
                                         "since the previous vetting of the same items.")


class ResponsesConfig(dg.Config):
    max_new_tokens: int = Field(default=50, gt=0)
    do_sample: bool = Field(default=False, description="Seeded sampling instead of greedy decoding.")
    temperature: float = Field(default=0.8, gt=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    seed: int = 0


def _clip(text: str, width: int = _ITEM_TEXT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def failing_rows(report: dict, texts: dict[tuple[str, int], str], thresholds) -> list[tuple]:
    """Each failing item: polarity, index, its text, its score rounded (or why it has none), and the threshold it missed."""
    rows = []
    failed = {(p, i) for p in ("positive", "negative") for i in report["failed_indices"][p]}
    for r in report["results"]:
        key = (r["polarity"], r["idx"])
        if key not in failed:
            continue
        if r.get("error"):
            score = f"error: {_clip(r['error'], 120)}"
        elif r["score"] is None:
            score = "refusal" if r.get("refusal") else "unscored"
        else:
            score = f"{r['score']:.0f}"
        rows.append((r["polarity"], r["idx"], _clip(texts.get(key, "")), score, f"needs {thresholds.requirement(r['polarity'])}"))
    return rows


def _report_result(context, stage_asset: str, store, result, scenarios, verdicts, config: VettingConfig) -> dg.MaterializeResult:
    from steering_assets.vetting.calibration import (
        CALIBRATION_PLOT,
        calibrate,
        calibration_plot,
        calibration_row,
        calibration_warnings,
        read_calibration,
        verdicts_digest,
    )
    from steering_assets.vetting.materialize import RESPONSES_FILE, STAGES, pass_rate, plot_title
    from steering_assets.vetting.reports import Thresholds, report_is_complete

    thresholds = Thresholds(config.pos_threshold, config.neg_threshold)
    report = result.details
    if stage_asset == "scenario_vetting":
        texts = {(p, i): (f"[system: {item.system_prompt}] " if item.system_prompt else "") + item.prompt
                 for p in ("positive", "negative") for i, item in enumerate(scenarios.side(p))}
        item_label = "scenario"
    else:
        responses_folder = store.folder("vetting", "scenario_responses", scenarios.category, scenarios.trait)
        responses = json.loads((responses_folder / RESPONSES_FILE).read_text(encoding="utf-8"))
        texts = {(p, i): text or "(empty)" for p in ("positive", "negative") for i, text in enumerate(responses[p])}
        item_label = "completion"
    rows = failing_rows(report, texts, thresholds)
    rate = pass_rate(report)
    stored = read_calibration(result.folder)
    calibration = calibrate(report["judge_model"], STAGES[stage_asset], report, verdicts, thresholds, stored)
    row = calibration_row(calibration)
    warnings = calibration_warnings(calibration, config.min_agreement, config.max_drift)
    stage_verdicts = [v for v in verdicts if v.stage == STAGES[stage_asset]]
    saved_plot = result.folder / CALIBRATION_PLOT
    if stored is not None and stored.get("verdicts_sha256") == verdicts_digest(stage_verdicts) and saved_plot.is_file():
        plot = saved_plot.read_bytes()  # drawn when the vetting was written; the verdicts have not changed since
    else:
        plot = calibration_plot(report, calibration, stage_verdicts, stored, thresholds,
                                plot_title(scenarios, stage_asset, report["judge_model"]))
    complete = report_is_complete(report)
    for name in scenarios.ignored:
        context.log.warning(f"{scenarios.partition_key}: {name} is not read: the .jsonl beside it is preferred")
    if not complete:
        context.log.warning(f"{scenarios.partition_key}: {report['summary']['errors']} error(s) and "
                            f"{result.details.get('unscored', 0)} unscored item(s); the next run asks exactly those again")
    summary_line = (f"pass rate {rate:.0%} (bar {config.pass_bar:.0%}); {len(rows)} failing item(s) to fix"
                    + (f", {report['summary']['errors']} of them judge errors" if report["summary"]["errors"] else ""))
    return dg.MaterializeResult(
        metadata={
            "pass_rate": dg.MetadataValue.float(rate),
            "summary": dg.MetadataValue.json(report["summary"]),
            "failing_items": dg.MetadataValue.md(md_table(
                ["polarity", "index", item_label, "score", "threshold missed"], rows or [("-", "-", "all passed", "-", "-")])),
            "judge": report["judge_model"],
            "judge_scale": report["judge_scale"],
            **({"judge_token_text": report["judge_token_text"]} if report.get("judge_token_text") else {}),
            "calibration": dg.MetadataValue.md(md_table(["judge", "agreement with known verdicts", "ambiguous share "
                                                         f"({thresholds.neg_threshold:g} < score < {thresholds.pos_threshold:g})",
                                                         "drift since previous vetting"],
                                                        [(report["judge_model"], row["agreement"], row["ambiguous"], row["drift"])])),
            "calibration_plot": dg.MetadataValue.md(png_markdown(plot, "judge calibration")),
            "calibration_details": dg.MetadataValue.json(calibration),
            "scenario_files": dg.MetadataValue.json({**scenarios.sources, "ignored": scenarios.ignored}),
            "complete": complete,
            "path": dg.MetadataValue.path(str(result.folder)),
            "reused_existing_artifact": result.skipped,
        },
        check_results=[
            dg.AssetCheckResult(check_name=PASS_CHECK, passed=rate >= config.pass_bar, description=summary_line,
                                metadata={"pass_rate": rate, "failing_items": len(rows)}),
            dg.AssetCheckResult(
                check_name=CALIBRATION_CHECK, passed=not warnings, severity=dg.AssetCheckSeverity.WARN,
                description="; ".join(warnings) or f"agreement {row['agreement']}; ambiguous {row['ambiguous']}; drift {row['drift']}",
                metadata={"agreement": row["agreement"], "ambiguous": row["ambiguous"], "drift": row["drift"]},
            ),
        ],
    )


def _folder(context, scenarios: ScenarioSource) -> Path:
    from steering_assets.vetting.materialize import trait_folder

    return trait_folder(Path(scenarios.root), context.partition_key)


def _scenario_files_asset() -> dg.AssetsDefinition:
    @dg.observable_source_asset(key=SCENARIO_FILES_KEY, partitions_def=VETTING_PARTITIONS, group_name=GROUP,
                                description="Scenario files of each trait (definition.txt and each polarity's .jsonl or .txt); "
                                            "the data version is a hash of the files vetting reads.")
    def scenario_files(context: dg.OpExecutionContext, scenarios: ScenarioSource) -> dg.DataVersionsByPartition:
        from steering_assets.formats.scenarios import scenario_data_version
        from steering_assets.vetting.materialize import trait_folder

        keys = context.instance.get_dynamic_partitions(VETTING_PARTITIONS.name)
        return dg.DataVersionsByPartition({k: scenario_data_version(trait_folder(Path(scenarios.root), k)) for k in keys})

    return scenario_files


def _judge_stage(context, stage_asset: str, config: VettingConfig, storage: ArtifactStorage, judge: JudgeResource,
                 scenarios: ScenarioSource, vet) -> dg.MaterializeResult:
    """Run one judge stage (``vet_scenarios`` or ``vet_responses``) for the run's trait."""
    from steering_assets.formats.scenarios import read_trait_scenarios, read_verdicts
    from steering_assets.vetting.reports import Thresholds

    store = storage.store()
    with reported_as_failure(context.partition_key):
        folder = _folder(context, scenarios)
        # Everything the stage reads is checked before the judge is asked anything.
        items = read_trait_scenarios(folder)
        verdicts = read_verdicts(folder, items)
        backend = judge.judge(store.folder("vetting", "judgments"))
        result = vet(folder, store, backend, judge.judge_name, Thresholds(config.pos_threshold, config.neg_threshold),
                     verdicts)
    return _report_result(context, stage_asset, store, result, items, verdicts, config)


def _vetting_asset(name: str, deps: list, description: str):
    key = dg.AssetKey(["vetting", name])
    return dg.asset(
        key=key, deps=deps, partitions_def=VETTING_PARTITIONS, group_name=GROUP, code_version="2",
        automation_condition=dg.AutomationCondition.eager(),  # an edited scenario or definition re-vets its trait
        check_specs=[
            # Checks carry the asset's partitions: each trait keeps its own status in the UI.
            dg.AssetCheckSpec(PASS_CHECK, asset=key, partitions_def=VETTING_PARTITIONS,
                              description="Pass rate at or above the bar."),
            dg.AssetCheckSpec(CALIBRATION_CHECK, asset=key, partitions_def=VETTING_PARTITIONS,
                              description="WARN when the judge disagrees with known verdicts or drifted since the previous vetting."),
        ],
        description=description,
    )


def _scenario_vetting_asset() -> dg.AssetsDefinition:
    @_vetting_asset("scenario_vetting", [SCENARIO_FILES_KEY], "Stage 0: the judge scores whether each scenario sets up the trait "
                    "(positive) or its opposite (negative); writes scenario_scores.json.")
    def scenario_vetting(context: dg.AssetExecutionContext, config: VettingConfig, storage: ArtifactStorage, judge: JudgeResource,
                         scenarios: ScenarioSource) -> dg.MaterializeResult:
        from steering_assets.vetting.materialize import vet_scenarios

        return _judge_stage(context, "scenario_vetting", config, storage, judge, scenarios, vet_scenarios)

    return scenario_vetting


def _scenario_responses_asset() -> dg.AssetsDefinition:
    @dg.asset(key=["vetting", "scenario_responses"], deps=[SCENARIO_FILES_KEY, PERSONA_MODEL_KEY], partitions_def=VETTING_PARTITIONS, group_name=GROUP,
              pool="gpu", code_version="2", automation_condition=dg.AutomationCondition.eager(),
              description="Stage 1: a base model continues every scenario (no chat template; a system prompt goes first), "
                          "batched, greedy or seeded sampling.")
    def scenario_responses(context: dg.AssetExecutionContext, config: ResponsesConfig, storage: ArtifactStorage,
                           scenarios: ScenarioSource, language_model: LanguageModelResource) -> dg.MaterializeResult:
        from steering_assets.vetting.materialize import generate_responses

        with reported_as_failure(context.partition_key):
            result = generate_responses(_folder(context, scenarios), storage.store(), language_model.get_model(),
                                        language_model.get_tokenizer(), language_model.model_name, **config.model_dump())
        examples = json.loads((result.folder / "responses.json").read_text(encoding="utf-8"))
        return dg.MaterializeResult(metadata={
            "completions": dg.MetadataValue.json(result.details["count"]),
            "examples": dg.MetadataValue.md(md_table(["polarity", "completion"], [(s, t[:120]) for s in examples for t in examples[s][:2]])),
            "path": dg.MetadataValue.path(str(result.folder)), "reused_existing_artifact": result.skipped,
        })

    return scenario_responses


def _response_vetting_asset() -> dg.AssetsDefinition:
    @_vetting_asset("response_vetting", [dg.AssetKey(["vetting", "scenario_responses"])],
                    "Stage 2: the judge scores each completion against the definition; writes response_scores.json.")
    def response_vetting(context: dg.AssetExecutionContext, config: VettingConfig, storage: ArtifactStorage, judge: JudgeResource,
                         scenarios: ScenarioSource) -> dg.MaterializeResult:
        from steering_assets.vetting.materialize import vet_responses

        return _judge_stage(context, "response_vetting", config, storage, judge, scenarios, vet_responses)

    return response_vetting


def build_vetting_assets() -> list:
    """The per-trait vetting assets: the scenario files (observed), stage 0, the completions and stage 2."""
    return [_scenario_files_asset(), _scenario_vetting_asset(), _scenario_responses_asset(), _response_vetting_asset()]
