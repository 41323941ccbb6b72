"""What ``make demo`` measures about its own judge and prints beside the product's tables.

The offline judge is trusted only as far as it was measured, so the demo measures it on labels
known by construction: a role's replies (asked under the role's instruction) against the default
assistant's replies to the same questions, both rated for the role by the same judge. The AUROC of
the two sets is the chance that a random role reply outscores a random default reply.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from steering_assets.core.artifacts import ArtifactIntegrityError, ArtifactStore


@dataclasses.dataclass(frozen=True)
class RoleAgreement:
    role: str
    auroc: float
    role_replies: int
    default_replies: int
    role_mean: float  # mean 0-100 score of the role's replies for the role
    default_mean: float  # mean 0-100 score of the default replies for the same role


def role_judge_agreement(judge: Any, data_root: Path, instructions_root: Path, source_model: str, model_name: str,
                         roles: Sequence[str]) -> list[RoleAgreement]:
    """Per role: the judge's 0-100 concept scores of the role's replies against the default replies rated for that role.

    Each default reply is rated once, against one of the role's instructions in turn (the role's own
    replies are rated against the instruction they were asked under, ``rollout_scoring.judge_item``);
    a judgment cache makes the role replies free after ``rollout_scores``. Raises ``ValueError``
    naming the file when a side has no replies.
    """
    from sklearn.metrics import roc_auc_score

    from steering_assets.formats.instructions import instruction_path, read_instruction_file
    from steering_assets.formats.rollouts import ROLES, PersonaRef
    from steering_assets.personas.loading import read_responses
    from steering_assets.personas.rollout_scoring import judge_item

    default_path = PersonaRef(ROLES, source_model, "default").responses_path(data_root)
    defaults = [r for r in read_responses(default_path, ROLES)]
    sides: dict[str, tuple[list, list]] = {}
    for role in roles:
        spec = read_instruction_file(instruction_path(instructions_root, ROLES, role), ROLES)
        path = PersonaRef(ROLES, source_model, role).responses_path(data_root)
        own = read_responses(path, ROLES)
        if not own or not defaults:
            raise ValueError(f"no replies to compare in {path if not own else default_path}")
        prompts = sorted({row.system_prompt for row in own})
        sides[role] = ([judge_item(spec, row, model_name) for row in own],
                       [judge_item(spec, dataclasses.replace(row, system_prompt=prompts[i % len(prompts)]), model_name)
                        for i, row in enumerate(defaults)])
    # One call for every role: a default reply's likelihood without any role is the same for all of them.
    judgments = iter(judge.score([item for ours, theirs in sides.values() for item in ours + theirs]))
    rows = []
    for role, (role_items, default_items) in sides.items():
        scores = [next(judgments).score for _ in range(len(role_items) + len(default_items))]
        if any(s is None for s in scores):
            missing = sum(s is None for s in scores)
            raise ValueError(f"the judge left {missing} of {len(scores)} replies of role {role!r} unscored")
        ours, theirs = scores[:len(role_items)], scores[len(role_items):]
        auroc = float(roc_auc_score([1] * len(ours) + [0] * len(theirs), ours + theirs))
        rows.append(RoleAgreement(role, auroc, len(ours), len(theirs), sum(ours) / len(ours), sum(theirs) / len(theirs)))
    return rows


def steered_samples(store: ArtifactStore, refs: Sequence[Any], width: int = 160) -> list[dict[str, str]]:
    """Per persona, one report-half instruction with the unsteered reply and the best vector method's reply
    at its chosen factor (the judged evaluation's own generations)."""
    from steering_assets.steering.judged_eval import ACTIVATION, TRAINED, UNSTEERED, judged_details, read_generations

    samples = []
    for ref in refs:
        details = judged_details(store, ref)
        if details is None:
            continue
        try:
            records = read_generations(store, ref)
        except ArtifactIntegrityError:
            continue
        table = {row["method"]: row for row in details["table"]}
        vector = max((m for m in (TRAINED, ACTIVATION) if table.get(m, {}).get("harmonic_mean") is not None),
                     key=lambda m: table[m]["harmonic_mean"], default=None)
        if vector is None:
            continue
        factor = table[vector]["factor"]
        report = [r for r in records if r["half"] == "report"]
        steered = next((r for r in report if r["method"] == vector and r["factor"] == factor), None)
        if steered is None:
            continue
        plain = next((r for r in report if r["method"] == UNSTEERED and r["instruction"] == steered["instruction"]), None)
        samples.append({
            "persona": ref.partition_key, "instruction": steered["instruction"], "method": f"{vector} x{factor:g}",
            "steered": _one_line(steered["reply"], width), "unsteered": _one_line(plain["reply"] if plain else "", width),
        })
    return samples


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


# What counts as a vector's effect in the demo's summary: a judged concept gain over the random direction
# of at least half a point (of 2) at the chosen factor, with the replies still rated fluent (1 of 2 or more).
CONCEPT_MARGIN = 0.5
FLUENCY_FLOOR = 1.0


@dataclasses.dataclass(frozen=True)
class VectorEffect:
    persona: str
    method: str  # the vector with the larger concept gain over the random direction
    factor: float
    concept_gain: float  # concept minus the random direction's, 0-2 scale, report half
    fluency: float
    holds: bool  # concept_gain >= CONCEPT_MARGIN and fluency >= FLUENCY_FLOOR


def vector_effects(store: ArtifactStore, refs: Sequence[Any]) -> list[VectorEffect]:
    """Per judged persona, the vector (trained or activation) that best raises the judged concept over the random
    direction, with its fluency; personas without a judged evaluation are left out."""
    from steering_assets.steering.judged_eval import ACTIVATION, TRAINED, judged_details

    effects = []
    for ref in refs:
        details = judged_details(store, ref)
        if details is None:
            continue
        rows = [row for row in details["table"] if row["method"] in (TRAINED, ACTIVATION)
                and row.get("above_random", {}).get("concept") is not None and row.get("fluency") is not None]
        if not rows:
            continue
        best = max(rows, key=lambda row: (row["above_random"]["concept"] if row["fluency"] >= FLUENCY_FLOOR else -9.0))
        gain, fluency = float(best["above_random"]["concept"]), float(best["fluency"])
        effects.append(VectorEffect(ref.partition_key, best["method"], float(best["factor"]), gain, fluency,
                                    gain >= CONCEPT_MARGIN and fluency >= FLUENCY_FLOOR))
    return effects


def print_persona_space(store: ArtifactStore) -> None:
    """The assistant axis, the PCA of the roles, the drift trajectory and capping beside addition, from the stored artifacts."""
    import json

    from steering_assets.cli.reports import print_table
    from steering_assets.persona_space.materialize import DRIFT_FILE, space_folder

    axes = store.root / "persona_space" / "assistant_axis"
    for source in sorted(p.name for p in axes.iterdir()) if axes.is_dir() else []:

        def details(asset: str) -> dict:
            try:
                return store.load_manifest(space_folder(store, asset, source))["details"]
            except ArtifactIntegrityError:
                return {}

        axis, pca, capping, drift, evaluation = (details(a) for a in ("assistant_axis", "persona_pca", "capping_config",
                                                                       "persona_drift", "capping_eval"))
        norms = axis.get("norms", [])
        print(f"\nPersona space ({source}): the assistant axis from {axis.get('n_default')} default and {axis.get('n_roles')} role "
              f"vectors; its norm grows from {norms[0]:.2f} (block 0) to {max(norms):.2f} (block {norms.index(max(norms))})")
        if pca:
            ranked = ", ".join(f"{r} {v:.1f}" for r, v in pca["axis_projection_ranked"])
            print(f"  PCA at layer {pca['layer']} (mean-centred): variance explained "
                  f"{' / '.join(f'{x:.0%}' for x in pca['variance_explained'])}; cosine of PC1 with the axis "
                  f"{pca['pc1_axis_cosine']:.2f}; roles on the axis (most assistant-like first): {ranked}; "
                  f"default assistant {pca['default_axis_projection']:.1f}")
        if capping:
            print(f"  capping {capping['experiment']}: floors on the axis {capping['floors']} (the default replies' "
                  f"{capping['percentile']:g} quantile at each layer)")
        if drift:
            trajectory = json.loads((space_folder(store, "persona_drift", source) / DRIFT_FILE).read_text())["conversations"][0]
            print(f"  drift of '{trajectory['id']}' at layer {drift['layer']}: "
                  f"{' -> '.join(f'{x:.2f}' for x in trajectory['projections'])} (floor {drift['floor']:.2f}; turns below: "
                  f"{trajectory['below_floor_turns'] or 'none'})")
        if evaluation:
            _print_capping_eval(evaluation, print_table)


def _print_capping_eval(evaluation: dict, print_table) -> None:
    from steering_assets.persona_space.assets import CAPPING_TABLE_HEADERS, capping_table_rows

    print("  capping beside adding the axis, rated as the steering evaluation rates its methods (0-2; concept = the role, "
          "lower is closer to the default assistant; assistant score = H(2 - concept, instruction, fluency))")
    for kind, rows in evaluation["tables"].items():
        if kind != "all":
            print(f"  {kind} prompts")
            print_table(CAPPING_TABLE_HEADERS, capping_table_rows(rows))
    print(f"  neutral text: perplexity x{evaluation['perplexity_ratio']:.3f} capped (bound {evaluation['perplexity_bound']:g}); "
          f"{evaluation['neutral_equal']} of {evaluation['neutral_prompts']} neutral replies unchanged "
          f"({evaluation['neutral_uncapped']} never capped a token)")
    sample = next((s for s in evaluation["samples"] if s["kind"] == "role-play"), None)
    if sample:
        print(f"  {sample['role']} | {sample['question']}")
        for method in evaluation["methods"]:
            print(f"    {method + ':':13} {_one_line(sample[method]['reply'], 150)}")
