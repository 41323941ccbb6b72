"""The tables the CLI and the demo print, read from the artifacts' manifests (nothing is recomputed)."""

from __future__ import annotations

from pathlib import Path

from steering_assets.core.artifacts import ArtifactIntegrityError, ArtifactStore


def summary_table(store: ArtifactStore, data_root: Path) -> list[tuple]:
    """One row per persona: dataset rows and the training split's rows and tokens."""
    from steering_assets.formats.rollouts import discover_every_persona
    from steering_assets.personas.materialize import dataset_folder, split_folder

    rows = []
    for ref in discover_every_persona(data_root):
        try:
            dataset = store.load_manifest(dataset_folder(store, ref), verify=False)["details"]
            split = store.load_manifest(split_folder(store, ref), verify=False)["details"]
        except ArtifactIntegrityError:
            rows.append((ref.kind.name, ref.partition_key, "-", "-", "-", "-", "not materialised"))
            continue
        rows.append((
            ref.kind.name, ref.partition_key, dataset["rows"], f"{split['train_rows']}/{split['validation_rows']}",
            split["train_tokens"], split["validation_tokens"], "yes" if split["train_budget_reached"] else "NO (warned)",
        ))
    return rows


def print_summary(store: ArtifactStore, data_root: Path) -> None:
    headers = ["kind", "partition", "rows", "train/val rows", "train tokens", "val tokens", "budget reached"]
    print_table(headers, [[str(v) for v in row] for row in summary_table(store, data_root)])


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    table = [headers] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for index, row in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def print_concept_classifiers(store: ArtifactStore, concepts: list[str]) -> None:
    rows = []
    for concept in concepts:
        try:
            details = store.load_manifest(store.folder("concepts", "trait_classifiers", concept), verify=False)["details"]
        except ArtifactIntegrityError:
            continue
        for dataset, best in sorted(details["best"].items()):
            rows.append([concept, dataset, best["model"], f"{best['score']:.3f}"])
    if rows:
        print_table(["concept", "dataset", "best model", "score (ROC-AUC, else accuracy; R2 for features)"], rows)
    else:
        print("(no concept classifiers)")


def _clip(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def print_vetting(store: ArtifactStore, scenarios_root: Path, traits: list[str], completion_verdicts: dict | None = None,
                  completions_shown: int = 3) -> None:
    """Pass rates per stage, every failing scenario, a few failing completions, and the judge calibration table
    (agreement with the known verdicts of ``verdicts.jsonl`` and, for completions, ``completion_verdicts``; the share
    of ambiguous scores; the drift since the previous vetting)."""
    import json

    from steering_assets.formats.scenarios import read_trait_scenarios, read_verdicts
    from steering_assets.vetting.calibration import calibrate, calibration_row, read_calibration
    from steering_assets.vetting.materialize import RESPONSES_FILE, STAGES, pass_rate, read_report, trait_folder
    from steering_assets.vetting.reports import Thresholds

    rates, scenario_rows, completion_rows, calibration_rows, judges = [], [], [], [], set()
    for key in traits:
        folder = trait_folder(scenarios_root, key)
        scenarios = read_trait_scenarios(folder)
        verdicts = read_verdicts(folder, scenarios) + list((completion_verdicts or {}).get(key, []))
        row = [key]
        for stage in STAGES:
            report = read_report(store, stage, scenarios.category, scenarios.trait)
            if report is None:
                row.append("-")
                continue
            row.append(f"{pass_rate(report):.0%}")
            thresholds = Thresholds(**report["thresholds"])
            judges.add(report["judge_model"])
            stored = read_calibration(store.folder("vetting", stage, scenarios.category, scenarios.trait))
            calibration = calibration_row(calibrate(report["judge_model"], STAGES[stage], report, verdicts, thresholds, stored))
            calibration_rows.append([key, f"{STAGES[stage]}s", calibration["agreement"], calibration["ambiguous"],
                                     calibration["drift"]])
            scores = {(r["polarity"], r["idx"]): r["score"] for r in report["results"]}
            failed = [(side, i) for side in ("positive", "negative") for i in report["failed_indices"][side]]
            if stage == "scenario_vetting":
                for side, i in failed:
                    score = scores.get((side, i))
                    scenario_rows.append([key, f"{side[:3]} {i}", "error" if score is None else f"{score:.0f}",
                                          thresholds.requirement(side), _clip(scenarios.side(side)[i].prompt)])
            else:
                responses = json.loads((store.folder("vetting", "scenario_responses", scenarios.category, scenarios.trait)
                                        / RESPONSES_FILE).read_text(encoding="utf-8"))
                for side, i in failed[:completions_shown]:
                    score = scores.get((side, i))
                    completion_rows.append([key, f"{side[:3]} {i}", "error" if score is None else f"{score:.0f}",
                                            thresholds.requirement(side), _clip(responses[side][i]) or "(empty)"])
                if len(failed) > completions_shown:
                    completion_rows.append([key, f"+{len(failed) - completions_shown} more", "", "",
                                            str(store.folder("vetting", stage, scenarios.category, scenarios.trait))])
        rates.append(row)
    print_table(["trait", "scenarios pass", "completions pass"], rates)
    if scenario_rows:
        print("\nScenarios that fail (fix these lines in the scenario files):")
        print_table(["trait", "item", "score", "needs", "scenario"], scenario_rows)
    if completion_rows:
        print("\nCompletions that fail (the base model did not write the trait, or its opposite, as the scenario asked):")
        print_table(["trait", "item", "score", "needs", "completion"], completion_rows)
    if calibration_rows:
        print(f"\nJudge calibration ({', '.join(sorted(judges))}): agreement with the known verdicts, share of scores "
              "between the thresholds, change since the previous vetting of the same items")
        print_table(["trait", "stage", "agreement", "ambiguous", "drift"], calibration_rows)


def print_evaluations(store: ArtifactStore, data_root: Path) -> None:
    from steering_assets.formats.rollouts import discover_every_persona
    from steering_assets.steering.classifier_eval import effect_bar_text, evaluation_table

    refs = discover_every_persona(data_root)
    rows = evaluation_table(store, refs)
    if not rows:
        print("(no evaluations)")
        return
    print_table(list(rows[0]), [[str(v) for v in row.values()] for row in rows])
    roles = [r for r in rows if r["persona"] in {ref.partition_key for ref in refs if ref.kind.name == "roles"}]
    print(f"steering effect ({effect_bar_text(store, refs)}) for {sum(r['effect'] == 'yes' for r in roles)} of {len(roles)} roles")


def print_method_comparison(store: ArtifactStore, data_root: Path) -> None:
    """Per persona: each method's reported harmonic mean (chosen factors in brackets), the winner, and wins per method."""
    from steering_assets.formats.rollouts import discover_every_persona
    from steering_assets.steering.judged_eval import METHODS, comparison_table

    refs = discover_every_persona(data_root)
    rows, wins = comparison_table(store, refs)
    if not rows:
        print("(no judged evaluations)")
        return

    def cell(row, method, factor_key=None):
        factor = row.get(factor_key) if factor_key else None
        return f"{row[method]}" + (f" (x{factor:g})" if factor is not None else "")

    def above(row, method):
        value = row.get("concept above random", {}).get(method)
        return "n/a" if value is None else f"{value:+.2f}"

    print_table(["persona", "trained (factor)", "activation (factor)", "random (factor)", "prompted", "unsteered", "best",
                  "concept above random: trained / activation", "|trained| / residual norm"],
                 [[row["persona"], cell(row, "trained", "trained factor"), cell(row, "activation", "activation factor"),
                   cell(row, "random", "random factor"), cell(row, "prompted"), cell(row, "unsteered"), row["best"],
                   f"{above(row, 'trained')} / {above(row, 'activation')}", str(row["|trained| / residual"])] for row in rows])
    print("personas won: " + ", ".join(f"{method} {wins[method]}" for method in METHODS))
