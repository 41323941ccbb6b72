"""The capping evaluation as a stored artifact: prompts from the role datasets, the default replies as neutral text."""

from __future__ import annotations

import math
from typing import Any, Callable

from steering_assets.core.artifacts import ArtifactResult, ArtifactStore, fingerprint, write_json_atomic
from steering_assets.formats.rollouts import ROLES, PersonaRef
from steering_assets.persona_space.capping_eval import (
    KINDS,
    CappingEvalSettings,
    assistant_score,
    drift_prompts,
    evaluate_capping,
)
from steering_assets.persona_space.materialize import (
    CAPPING_FILE,
    CODE_VERSION,
    default_conversations,
    read_axis,
    space_folder,
)

EVAL_FILE = "capping_eval.json"
# 2: rated with the judged steering evaluation's three 0-2 ratings (was one 0-3 role-adherence rubric); addition at factors.
EVAL_CODE_VERSION = "2"


def role_prompts(store: ArtifactStore, source_model: str, roles: list[str], settings: CappingEvalSettings,
                 left_out: dict[str, str] | None = None) -> list:
    """Role-play and multi-turn prompts of every role the axis was computed from (their kept replies' questions);
    a role whose replies carry no instruction is left out, with why, in ``left_out``."""
    import polars as pl

    from steering_assets.personas.materialize import load_persona_dataset
    from steering_assets.steering.judged_eval import persona_system_prompt

    prompts = []
    for name in roles:
        frame = load_persona_dataset(store, PersonaRef.from_partition_key(ROLES, f"{source_model}/{name}"))
        kept = frame.filter(pl.col("label").is_in(list(ROLES.default_keep_labels))).sort("extract_score", descending=True, nulls_last=True)
        instruction, why = persona_system_prompt(kept, ROLES.default_keep_labels)
        if instruction is None:
            if left_out is not None:
                left_out[name] = why
            continue
        rows = [{"question": q, "messages": m} for q, m in zip(kept["question"].to_list(), kept["messages"].to_list())]
        prompts += drift_prompts(name, instruction, rows, settings.questions_per_role)
    return prompts


def materialize_capping_eval(store: ArtifactStore, source_model: str, model: Any, tokenizer: Any, model_name: str, judge: Any,
                             judge_name: str, settings: CappingEvalSettings = CappingEvalSettings(),
                             log: Callable[[str], None] = print) -> ArtifactResult:
    """Capping beside addition (``capping_eval.evaluate_capping``), skipped when the capping config, the model, the
    judge, the rating prompts and the settings are unchanged."""
    from steering_assets.models.hooks import hidden_size, n_layers
    from steering_assets.models.pretrained import injected_system_prompt
    from steering_assets.persona_space.capping import read_capping_config
    from steering_assets.steering.judged_eval import typical_residual_norm
    from steering_assets.steering.ratings import STEERING_RATING_VERSION

    axis, axis_manifest = read_axis(store, source_model)
    capping = space_folder(store, "capping_config", source_model)
    capping_manifest = store.load_manifest(capping)
    folder = space_folder(store, "capping_eval", source_model)
    key = fingerprint({"code": [CODE_VERSION, EVAL_CODE_VERSION], "ratings": STEERING_RATING_VERSION,
                       "capping": capping_manifest["fingerprint"], "model": model_name, "judge": judge_name,
                       "settings": settings.__dict__})
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True)
    plan = read_capping_config(capping / CAPPING_FILE, n_layers(model), hidden_size(model))
    left_out: dict[str, str] = {}
    prompts = role_prompts(store, source_model, axis_manifest["details"]["roles"], settings, left_out)
    for role, why in left_out.items():
        log(f"capping eval: {role} left out: {why}")
    defaults = default_conversations(store, source_model, axis_manifest["details"]["defaults"], tokenizer)
    neutral_text = defaults[:settings.neutral_rows]
    questions = list(dict.fromkeys(c[-2]["content"] for c in defaults if len(c) >= 2 and c[-2]["role"] == "user"))
    layer = plan.middle_layer
    norm = typical_residual_norm(model, tokenizer, neutral_text, layer, model_name=model_name)
    log(f"capping eval: {len(prompts)} role prompts, {min(len(questions), settings.neutral_prompts)} neutral prompts, "
        f"addition at layer {layer} x{', '.join(f'{f:g}' for f in settings.addition_factors)} of the residual norm {norm:.1f}")
    leaks = [text for text in (injected_system_prompt(tokenizer),) if text]
    result = evaluate_capping(model, tokenizer, plan, axis.unit(layer), norm, prompts, questions[:settings.neutral_prompts],
                              neutral_text, judge, settings, model_name=model_name, log=log, leaks=leaks)
    details = {**_details(result, prompts, plan, settings), "roles_left_out": left_out}
    manifest = store.write_artifact(folder, {EVAL_FILE: lambda p: write_json_atomic(details, p)}, fingerprint_value=key, details=details)
    return ArtifactResult(folder, manifest, skipped=False)


def _details(result: Any, prompts: list, plan: Any, settings: CappingEvalSettings) -> dict[str, Any]:
    from steering_assets.steering.ratings import CRITERIA

    tables = {kind: [_rounded(row) for row in result.table(prompts, None if kind == "all" else kind)] for kind in ("all", *KINDS)}
    samples = []
    for i, p in enumerate(prompts):
        sample = {"role": p.role, "kind": p.kind, "question": p.question, "capped_positions": result.capped_positions[i]}
        for method, replies in result.replies.items():
            rating = result.ratings[method][i]
            sample[method] = {"reply": replies[i], "degenerate": result.degenerate[method][i],
                              **({c: round(getattr(rating, c), 3) for c in CRITERIA} | {"assistant_score": round(assistant_score(rating), 3)}
                                 if rating.ok else {"error": rating.error})}
        samples.append(sample)
    uncapped = [n for n in result.neutral if n["capped_positions"] == 0]
    return {"experiment": plan.experiment_id, "layers": list(plan.layers), "methods": settings.methods(), "tables": tables,
            "samples": samples, "neutral": result.neutral, "neutral_prompts": len(result.neutral),
            "neutral_equal": sum(n["equal"] for n in result.neutral), "neutral_uncapped": len(uncapped),
            "neutral_uncapped_equal": sum(n["equal"] for n in uncapped), "perplexity": {k: round(v, 4) for k, v in result.perplexity.items()},
            "perplexity_ratio": result.perplexity["capped"] / result.perplexity["unsteered"],
            "perplexity_bound": settings.max_perplexity_ratio, "addition_factors": list(settings.addition_factors)}


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    """Means to 3 places; NaN (nothing rated) as None, so the artifact is strict JSON."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
