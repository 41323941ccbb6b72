"""Vetting artifacts per trait: scenario scores (stage 0), completions (stage 1), completion scores (stage 2).

Stage 0 writes ``scenario_scores.json`` (each result with the item's text, as trait-interp's
``vet_scenarios`` does), stage 2 ``response_scores.json`` (the shape in docs/vetting.md); both write
``calibration.json`` (every item's score keyed by the digest of its prompt, and the drift
since the previous vetting). A saved result is reused only when its inputs, judge and
thresholds are unchanged **and** every item has a score: a result holding errors or
unscored items is redone, and since only scored judgments are cached, exactly those items
are asked again.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from steering_assets.core.artifacts import (
    ArtifactIntegrityError,
    ArtifactResult,
    ArtifactStore,
    fingerprint,
)
from steering_assets.core.names import validate_name
from steering_assets.formats.scenarios import (
    POLARITIES,
    TraitScenarios,
    Verdict,
    read_trait_scenarios,
    scenario_files_digest,
    scenario_input_hashes,
)
from steering_assets.judge.judgments import JudgeItem, prompt_text
from steering_assets.judge.local import complete_scenarios, response_prompt, scenario_prompt
from steering_assets.vetting.calibration import (
    CALIBRATION_FILE,
    CALIBRATION_PLOT,
    calibrate,
    calibration_plot,
    item_scores,
    read_calibration,
    stored_calibration,
    verdicts_digest,
)
from steering_assets.vetting.reports import Thresholds, report_is_complete, response_scores_report

VETTING_CODE_VERSION = "2"
SCENARIO_REPORT_FILE = "scenario_scores.json"
REPORT_FILE = "response_scores.json"
RESPONSES_FILE = "responses.json"
STAGE_REPORT_FILES = {"scenario_vetting": SCENARIO_REPORT_FILE, "response_vetting": REPORT_FILE}
STAGES = {"scenario_vetting": "scenario", "response_vetting": "response"}


def trait_folder(scenarios_root: Path, partition_key: str) -> Path:
    category, _, trait = partition_key.partition("/")
    return Path(scenarios_root) / validate_name(category, "scenario category") / validate_name(trait, "trait name")






def scale_name(scale_top: int) -> str:
    return "0-100" if scale_top == 100 else f"0-{scale_top} (a one-token rating, score = rating x 100/{scale_top})"


def _artifact_folder(store: ArtifactStore, asset: str, scenarios: TraitScenarios) -> Path:
    return store.folder("vetting", asset, scenarios.category, scenarios.trait)


def _strict_json(document: Any) -> Callable[[Path], None]:
    # allow_nan=False: a NaN or infinity can never reach a report (it would raise here first).
    return lambda path: path.write_text(json.dumps(document, indent=2, allow_nan=False, ensure_ascii=False), encoding="utf-8")


def _previous_calibration(store: ArtifactStore, folder: Path) -> dict | None:
    try:
        store.load_manifest(folder)
    except ArtifactIntegrityError:
        return None
    return read_calibration(folder)


def _vet(store: ArtifactStore, asset: str, scenarios: TraitScenarios, key: str, judge: Any, judge_name: str,
         thresholds: Thresholds, build_prompts: Callable[[int], dict[tuple[str, int], JudgeItem]], verdicts: Sequence[Verdict],
         extra: dict[str, Any] | None = None) -> ArtifactResult:
    folder = _artifact_folder(store, asset, scenarios)
    existing = store.current_manifest(folder, key)
    if existing is not None and existing["details"].get("complete"):
        return ArtifactResult(folder, existing, skipped=True)
    scale_top = judge.scale_top()  # the setup probe (once per judge, cached), or the local tokenizer's check
    items = build_prompts(scale_top)
    order = list(items)
    judgments = judge.score([items[item] for item in order])
    prompts = {key: prompt_text(item) for key, item in items.items()}
    report = response_scores_report(asset, scenarios, [(idx, polarity, j) for (polarity, idx), j in zip(order, judgments)],
                                    thresholds, with_text=asset == "scenario_vetting")
    report = {**report, "judge_model": judge_name, "judge_method": getattr(judge, "method", "logprob"), "judge_scale": scale_name(scale_top),
              # Which logprob field the setup probe read the server's token text from, and why (servers differ).
              **({"judge_token_text": judge.probe.text_source} if getattr(getattr(judge, "probe", None), "text_source", "") else {}),
              **(extra or {})}
    vetted_at = datetime.now(timezone.utc).isoformat()
    stage_verdicts = [v for v in verdicts if v.stage == STAGES[asset]]
    calibration = {**stored_calibration(judge_name, STAGES[asset], vetted_at, item_scores(report, prompts),
                                        _previous_calibration(store, folder)),
                   "verdicts_sha256": verdicts_digest(stage_verdicts)}
    # Drawn once here and kept with the result; the asset redraws it only when the verdicts change.
    plot = calibration_plot(report, calibrate(judge_name, STAGES[asset], report, stage_verdicts, thresholds, calibration),
                            stage_verdicts, calibration, thresholds, plot_title(scenarios, asset, judge_name))
    if asset == "scenario_vetting":
        (folder / REPORT_FILE).unlink(missing_ok=True)  # written by stage 0 before version 2: never leave it to be read
    complete = report_is_complete(report)
    manifest = store.write_artifact(
        folder, {STAGE_REPORT_FILES[asset]: _strict_json(report), CALIBRATION_FILE: _strict_json(calibration),
                 CALIBRATION_PLOT: lambda path: path.write_bytes(plot)},
        fingerprint_value=key,
        details={**report, "complete": complete, "unscored": sum(r["score"] is None for r in report["results"]),
                 "sources": scenarios.sources, "ignored_files": scenarios.ignored},
    )
    return ArtifactResult(folder, manifest, skipped=False)


def plot_title(scenarios: TraitScenarios, asset: str, judge_name: str) -> str:
    return f"{scenarios.partition_key} {STAGES[asset]}s, judge {judge_name}"


def _key(stage: str, inputs: Any, judge: Any, judge_name: str, thresholds: Thresholds) -> str:
    return fingerprint({"code": VETTING_CODE_VERSION, "stage": stage, "inputs": inputs, "judge": judge_name,
                        "number_scale": getattr(judge, "number_scale", "auto"), "thresholds": asdict(thresholds)})


def vet_scenarios(folder: Path, store: ArtifactStore, judge: Any, judge_name: str, thresholds: Thresholds,
                  verdicts: Sequence[Verdict] = ()) -> ArtifactResult:
    """Stage 0: does each scenario set up the trait (positive) or its opposite (negative)? Writes scenario_scores.json."""
    scenarios = read_trait_scenarios(folder)
    key = _key("scenario_vetting", scenario_files_digest(folder), judge, judge_name, thresholds)

    def prompts(scale_top: int) -> dict[tuple[str, int], JudgeItem]:
        # The likelihood judge reads what the scenario makes the model say it will be (likelihood.py, "scenario").
        return {(polarity, i): JudgeItem(prompt=scenario_prompt(scenarios.definition, item.prompt, item.system_prompt, scale_top),
                                         criterion="scenario", answer=item.generation_text(), concept=scenarios.trait)
                for polarity in POLARITIES for i, item in enumerate(scenarios.side(polarity))}

    return _vet(store, "scenario_vetting", scenarios, key, judge, judge_name, thresholds, prompts, verdicts,
                {"input_hashes": scenario_input_hashes(folder)})


def generate_responses(folder: Path, store: ArtifactStore, model: Any, tokenizer: Any, model_name: str, **generation: Any) -> ArtifactResult:
    """Stage 1: completions of every scenario by a base model (no chat template; a system prompt goes first)."""
    scenarios = read_trait_scenarios(folder)
    files = scenario_files_digest(folder)
    key = fingerprint({"code": VETTING_CODE_VERSION, "files": files, "model": model_name, "generation": generation})
    out = _artifact_folder(store, "scenario_responses", scenarios)
    existing = store.current_manifest(out, key)
    if existing is not None:
        return ArtifactResult(out, existing, skipped=True)
    responses = {side: complete_scenarios(model, tokenizer, [item.generation_text() for item in scenarios.side(side)],
                                          model_name=model_name, **generation)
                 for side in POLARITIES}
    manifest = store.write_artifact(out, {RESPONSES_FILE: _strict_json(responses)}, fingerprint_value=key,
                                    details={"count": {s: len(r) for s, r in responses.items()}, "files": files, **generation})
    return ArtifactResult(out, manifest, skipped=False)


def vet_responses(folder: Path, store: ArtifactStore, judge: Any, judge_name: str, thresholds: Thresholds,
                  verdicts: Sequence[Verdict] = ()) -> ArtifactResult:
    """Stage 2: does each completion express the trait? Writes response_scores.json."""
    scenarios = read_trait_scenarios(folder)
    responses_folder = _artifact_folder(store, "scenario_responses", scenarios)
    responses_manifest = store.load_manifest(responses_folder)
    if responses_manifest["details"].get("files") != scenario_files_digest(folder):
        raise ArtifactIntegrityError(f"{responses_folder}: the completions were made from other scenario files; "
                                     "materialize vetting/scenario_responses for this trait first")
    responses = json.loads((responses_folder / RESPONSES_FILE).read_text(encoding="utf-8"))
    key = _key("response_vetting", responses_manifest["fingerprint"], judge, judge_name, thresholds)

    def prompts(scale_top: int) -> dict[tuple[str, int], JudgeItem]:
        return {(polarity, i): JudgeItem(prompt=response_prompt(scenarios.definition, item.prompt, responses[polarity][i],
                                                                item.system_prompt, scale_top),
                                         criterion="concept", answer=responses[polarity][i], concept=scenarios.definition,
                                         question=item.generation_text())
                for polarity in POLARITIES for i, item in enumerate(scenarios.side(polarity))}

    return _vet(store, "response_vetting", scenarios, key, judge, judge_name, thresholds, prompts, verdicts)


def read_report(store: ArtifactStore, asset: str, category: str, trait: str) -> dict | None:
    path = store.folder("vetting", asset, category, trait) / STAGE_REPORT_FILES[asset]
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def pass_rate(report: dict) -> float:
    summary = report["summary"]
    total = sum(summary[k] for k in ("positive_passed", "negative_passed", "positive_failed", "negative_failed"))
    return (summary["positive_passed"] + summary["negative_passed"]) / total if total else 0.0
