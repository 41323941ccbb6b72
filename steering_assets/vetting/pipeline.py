"""Vetting artifacts per trait: scenario scores (stage 0), completions (stage 1), completion scores (stage 2)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from steering_assets.artifacts import ArtifactResult, ArtifactStore, file_digest, fingerprint
from steering_assets.personas.layout import validate_name
from steering_assets.vetting.local import complete_scenarios, response_prompt, scenario_prompt
from steering_assets.vetting.scenarios import Thresholds, TraitScenarios, read_trait_scenarios, response_scores_report

VETTING_CODE_VERSION = "1"
REPORT_FILE = "response_scores.json"
RESPONSES_FILE = "responses.json"


def trait_folder(scenarios_root: Path, partition_key: str) -> Path:
    category, _, trait = partition_key.partition("/")
    return Path(scenarios_root) / validate_name(category, "scenario category") / validate_name(trait, "trait name")


def scenario_files_digest(folder: Path) -> str:
    return fingerprint({name: file_digest(folder / name) for name in ("definition.txt", "positive.txt", "negative.txt") if (folder / name).is_file()})


def _artifact_folder(store: ArtifactStore, asset: str, scenarios: TraitScenarios) -> Path:
    return store.folder("vetting", asset, scenarios.category, scenarios.trait)


def _judge_all(judge: Any, prompts: list[tuple[int, str, str]]):
    judgments = judge.score([prompt for _, _, prompt in prompts])
    return [(index, polarity, judgment) for (index, polarity, _), judgment in zip(prompts, judgments)]


def _materialize_report(store, asset, scenarios, key, experiment, prompts, judge, thresholds) -> ArtifactResult:
    folder = _artifact_folder(store, asset, scenarios)
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True)
    report = response_scores_report(experiment, scenarios, _judge_all(judge, prompts), thresholds)
    manifest = store.write_artifact(folder, {REPORT_FILE: lambda p: p.write_text(json.dumps(report, indent=2))},
                                    fingerprint_value=key, details=report)
    return ArtifactResult(folder, manifest, skipped=False)


def vet_scenarios(folder: Path, store: ArtifactStore, judge: Any, judge_name: str, thresholds: Thresholds) -> ArtifactResult:
    """Stage 0: does each scenario set up the trait (positive) or its opposite (negative)?"""
    scenarios = read_trait_scenarios(folder)
    key = fingerprint({"code": VETTING_CODE_VERSION, "files": scenario_files_digest(folder), "judge": judge_name,
                       "thresholds": asdict(thresholds)})
    prompts = [(i, side, scenario_prompt(scenarios.definition, text))
               for side in ("positive", "negative") for i, text in enumerate(getattr(scenarios, side))]
    return _materialize_report(store, "scenario_vetting", scenarios, key, "scenario_vetting", prompts, judge, thresholds)


def generate_responses(folder: Path, store: ArtifactStore, model: Any, tokenizer: Any, model_name: str, **generation: Any) -> ArtifactResult:
    """Stage 1: completions of every scenario by a base model (no chat template)."""
    scenarios = read_trait_scenarios(folder)
    key = fingerprint({"code": VETTING_CODE_VERSION, "files": scenario_files_digest(folder), "model": model_name, "generation": generation})
    out = _artifact_folder(store, "scenario_responses", scenarios)
    existing = store.current_manifest(out, key)
    if existing is not None:
        return ArtifactResult(out, existing, skipped=True)
    responses = {side: complete_scenarios(model, tokenizer, getattr(scenarios, side), model_name=model_name, **generation)
                 for side in ("positive", "negative")}
    manifest = store.write_artifact(out, {RESPONSES_FILE: lambda p: p.write_text(json.dumps(responses, indent=2))},
                                    fingerprint_value=key, details={"count": {s: len(r) for s, r in responses.items()}, **generation})
    return ArtifactResult(out, manifest, skipped=False)


def vet_responses(folder: Path, store: ArtifactStore, judge: Any, judge_name: str, thresholds: Thresholds) -> ArtifactResult:
    """Stage 2: does each completion express the trait? Writes response_scores.json."""
    scenarios = read_trait_scenarios(folder)
    responses_folder = _artifact_folder(store, "scenario_responses", scenarios)
    responses_manifest = store.load_manifest(responses_folder)
    responses = json.loads((responses_folder / RESPONSES_FILE).read_text())
    key = fingerprint({"code": VETTING_CODE_VERSION, "responses": responses_manifest["fingerprint"], "judge": judge_name,
                       "thresholds": asdict(thresholds)})
    prompts = [(i, side, response_prompt(scenarios.definition, scenario, responses[side][i]))
               for side in ("positive", "negative") for i, scenario in enumerate(getattr(scenarios, side))]
    return _materialize_report(store, "response_vetting", scenarios, key, "response_vetting", prompts, judge, thresholds)


def pass_rate(report: dict) -> float:
    summary = report["summary"]
    total = sum(summary[k] for k in ("positive_passed", "negative_passed", "positive_failed", "negative_failed"))
    return (summary["positive_passed"] + summary["negative_passed"]) / total if total else 0.0
