"""Dagster wrappers for persona space: role vectors per role partition, then fan-ins over every stored vector."""

from typing import Any, Optional

import dagster as dg
from pydantic import Field

from steering_assets.core.artifacts import ArtifactResult
from steering_assets.core.asset_results import reported_as_failure
from steering_assets.core.metadata import md_table, png_markdown
from steering_assets.core.plots import line_plot_png
from steering_assets.formats.rollouts import ROLES, PersonaRef
from steering_assets.partitions.personas import ROLE_PARTITIONS, materialize_chunk
from steering_assets.persona_model.assets import PERSONA_MODEL_KEY
from steering_assets.resources.instructions import ConversationSource
from steering_assets.resources.judge import JudgeResource
from steering_assets.resources.language_model import LanguageModelResource, ModelSource
from steering_assets.resources.storage import ArtifactStorage

GROUP = "persona_space"
ROLE_VECTOR_KEY = dg.AssetKey(["roles", "role_vector"])
AXIS_KEY = dg.AssetKey([GROUP, "assistant_axis"])
PCA_KEY = dg.AssetKey([GROUP, "persona_pca"])
CAPPING_KEY = dg.AssetKey([GROUP, "capping_config"])
DRIFT_KEY = dg.AssetKey([GROUP, "persona_drift"])
CAPPING_EVAL_KEY = dg.AssetKey([GROUP, "capping_eval"])
DATASET_KEY = dg.AssetKey(["roles", "persona_dataset"])
BASELINE_KEY = dg.AssetKey(["roles", "baseline_dataset"])


class RoleVectorConfig(dg.Config):
    min_score: int = Field(default=3, ge=0, le=3, description="Keep a role's replies scored at least this (assistant-axis: 3).")
    min_replies: int = Field(default=50, gt=0, description="Fewer kept replies fail the partition (assistant-axis's --min_count: 50).")
    batch_size: int = Field(default=8, gt=0)
    max_length: int = Field(default=1024, gt=0, description="Tokens per conversation (longer ones are cut).")


class SourceModelConfig(dg.Config):
    source_model: Optional[str] = Field(default=None, description="The rollouts' source model (unset: the only one with role vectors).")


class PersonaPcaConfig(SourceModelConfig):
    layer: Optional[int] = Field(default=None, description="Layer of the PCA (unset: where the axis norm is largest).")
    n_components: int = Field(default=5, gt=0)
    scaling: str = Field(default="mean", description='"mean" (mean-centred, assistant-axis\'s MeanScaler) or "standard" (unit variance too).')


class CappingConfigConfig(SourceModelConfig):
    layers: Optional[list[int]] = Field(default=None, description="Capped layers (unset: 72-84% of the depth, as assistant-axis's Qwen3-32B 46-54).")
    percentile: float = Field(default=0.25, gt=0, lt=1, description="Quantile of the default replies' token projections (p0.25).")


class DriftConfig(SourceModelConfig):
    layer: Optional[int] = Field(default=None, description="Layer to project at (unset: the middle capped layer).")


class CappingEvalConfig(SourceModelConfig):
    questions_per_role: int = Field(default=3, gt=0, description="Role-play prompts per role (as many multi-turn ones follow).")
    neutral_prompts: int = Field(default=4, ge=0, description="Default-assistant questions answered capped and not.")
    neutral_rows: int = Field(default=64, gt=0, description="Default replies the perplexity and the residual norm are measured on.")
    max_new_tokens: int = Field(default=48, gt=0)
    addition_factors: list[float] = Field(default=[0.125, 0.25, 0.5], description="The axis added at these strengths, in typical residual norms (one method each).")
    max_perplexity_ratio: float = Field(default=1.05, gt=1, description="Bound on capped / unsteered perplexity of default replies.")


def _roles(context: dg.AssetExecutionContext) -> list[PersonaRef]:
    return [PersonaRef.from_partition_key(ROLES, k) for k in context.instance.get_dynamic_partitions(ROLE_PARTITIONS.name)]


def _source_model(context: dg.AssetExecutionContext, store: Any, config: SourceModelConfig) -> str:
    """The source model a fan-in after the axis works on: ``config.source_model``, else the only one with role vectors."""
    from steering_assets.persona_space.materialize import stored_role_vectors

    return stored_role_vectors(store, _roles(context), config.source_model).source_model


def _plot(draw, xlabel: str, ylabel: str, title: str, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(png_markdown(line_plot_png(draw, xlabel, ylabel, title), alt))


def role_vector_metadata(result: ArtifactResult) -> dict[str, Any]:
    d = result.details
    norms = d["norms"]

    def draw(axis) -> None:
        axis.plot(range(len(norms)), norms, marker="o", markersize=3, label=f"{d['type']} vector")

    return {"replies": d["replies"], "tokens": d["tokens"], "type": d["type"], "model": d["model"],
            "selection": dg.MetadataValue.json(d["selection"]), "empty_replies_skipped": d["empty_replies_skipped"],
            "shape": str(d["shape"]), "skipped_unchanged": result.skipped,
            "path": dg.MetadataValue.path(str(result.folder)),
            "norm_per_layer": _plot(draw, "layer", "norm", "role vector norm per layer", "norms")}


def build_persona_space_assets(personas_per_run: int = 8) -> list:
    return [_role_vector_asset(personas_per_run), _axis_asset(), _pca_asset(), _capping_asset(), _drift_asset(),
            _capping_eval_asset()]


def _role_vector_asset(personas_per_run: int) -> dg.AssetsDefinition:
    @dg.asset(
        key=ROLE_VECTOR_KEY, deps=[DATASET_KEY, BASELINE_KEY, PERSONA_MODEL_KEY], partitions_def=ROLE_PARTITIONS,
        group_name=GROUP, pool="gpu", kinds={"pytorch", "safetensors"}, code_version="1",
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=personas_per_run),
        description=("The mean residual stream over a role's fully role-playing replies (score >= 3) at every layer, "
                     "[n_layers, d]; the default partition averages every default reply. Saved as safetensors and in "
                     "assistant-axis's per-role .pt layout {vector, type, role}."),
    )
    def role_vector(context: dg.AssetExecutionContext, config: RoleVectorConfig, storage: ArtifactStorage,
                    language_model: LanguageModelResource):
        from steering_assets.persona_space.materialize import RoleVectorSettings, materialize_role_vectors

        settings = RoleVectorSettings(**config.model_dump())
        yield from materialize_chunk(context, ROLES, lambda refs: materialize_role_vectors(
            refs, storage.store(), language_model.get_model(), language_model.get_tokenizer(), language_model.model_name,
            settings, log=context.log.info), role_vector_metadata)

    return role_vector


def _axis_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=AXIS_KEY, deps=[ROLE_VECTOR_KEY], group_name=GROUP, kinds={"pytorch"}, code_version="1",
        description=("The assistant axis, mean(default) - mean(roles) per layer, from every stored role vector (read one "
                     "at a time; no rollout is read). assistant-axis's axis file {axis, default_mean, role_mean, n_default, n_roles}."),
    )
    def assistant_axis(context: dg.AssetExecutionContext, config: SourceModelConfig, storage: ArtifactStorage,
                       model_source: ModelSource) -> dg.MaterializeResult:
        from steering_assets.persona_space.materialize import AXIS_FILE, materialize_axis

        with reported_as_failure("assistant_axis"):
            result, axis, stored = materialize_axis(storage.store(), _roles(context), model_source.identity,
                                                    config.source_model, log=context.log.info)
        norms = axis.norms()
        if stored.missing:
            context.log.warning(f"left out {len(stored.missing)} role partition(s) without a role vector: {', '.join(stored.missing)}")

        def draw(ax) -> None:
            ax.plot(range(len(norms)), norms, marker="o", markersize=3, label="|axis|")

        return dg.MaterializeResult(metadata={
            "n_default": axis.n_default, "n_roles": axis.n_roles, "source_model": stored.source_model,
            "roles": ", ".join(result.details["roles"]), "left_out": dg.MetadataValue.json(stored.missing),
            "largest_norm_layer": int(norms.argmax()), "largest_norm": round(float(norms.max()), 3),
            "norm_per_layer": _plot(draw, "layer", "axis norm", "assistant axis norm per layer", "axis norms"),
            "path": dg.MetadataValue.path(str(result.folder / AXIS_FILE)), "skipped_unchanged": result.skipped})

    return assistant_axis


def _pca_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=PCA_KEY, deps=[AXIS_KEY], group_name=GROUP, kinds={"sklearn"}, code_version="1",
        description=("PCA of the role vectors at one layer (mean-centred as assistant-axis's analysis), variance explained, "
                     "the roles at each end of the first components, PC1's cosine with the axis, roles ranked on the axis."),
    )
    def persona_pca(context: dg.AssetExecutionContext, config: PersonaPcaConfig, storage: ArtifactStorage) -> dg.MaterializeResult:
        from steering_assets.persona_space.materialize import materialize_persona_pca

        store = storage.store()
        with reported_as_failure("persona_pca"):
            source = _source_model(context, store, config)
            result, space = materialize_persona_pca(store, source, config.layer, config.n_components, config.scaling)
        return dg.MaterializeResult(metadata=pca_metadata(result, space))

    return persona_pca


def pca_metadata(result: ArtifactResult, space: Any) -> dict[str, Any]:
    ratios = [float(x) for x in space.variance_explained]
    ranked = space.ranked_on_axis()

    def variance(ax) -> None:
        ax.bar([f"PC{i + 1}" for i in range(len(ratios))], ratios, label="variance explained")

    def projections(ax) -> None:
        ax.barh([r for r, _ in ranked][::-1], [v for _, v in ranked][::-1], label="projection on the unit axis")
        if space.default_projection is not None:
            ax.axvline(space.default_projection, color="grey", linestyle=":", label="default assistant")

    rows = [[role, *(f"{x:.2f}" for x in space.scores[i, :min(3, space.scores.shape[1])]), f"{space.axis_projection[i]:.2f}"]
            for i, role in enumerate(space.roles)]
    ends = result.details["ends"]
    return {
        "layer": space.layer, "scaling": space.scaling, "pc1_axis_cosine": round(space.pc1_axis_cosine, 3),
        "pc1_sign": "flipped to align with the axis" if space.pc1_flipped else "as computed (already aligned with the axis)",
        "variance_explained": _plot(variance, "component", "ratio", f"variance explained, layer {space.layer}", "variance"),
        "axis_projection": _plot(projections, "projection", "role", "roles on the assistant axis", "projections"),
        "ends": dg.MetadataValue.md(md_table(["component", "lowest roles", "highest roles"],
                                             [[pc, ", ".join(e["low"]), ", ".join(e["high"])] for pc, e in ends.items()])),
        "roles": dg.MetadataValue.md(md_table(["role", *(f"PC{i + 1}" for i in range(min(3, space.scores.shape[1]))), "axis"], rows)),
        "path": dg.MetadataValue.path(str(result.folder)),
    }


def _capping_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=CAPPING_KEY, deps=[AXIS_KEY, BASELINE_KEY, PERSONA_MODEL_KEY], group_name=GROUP, pool="gpu", kinds={"pytorch"},
        code_version="1",
        description=("Activation capping from the axis: at each capped layer the projection on -axis is capped at tau "
                     "(a floor on the projection on the axis at the default replies' p-quantile). assistant-axis's "
                     "capping_config.pt layout {vectors, experiments}."),
    )
    def capping_config(context: dg.AssetExecutionContext, config: CappingConfigConfig, storage: ArtifactStorage,
                       language_model: LanguageModelResource) -> dg.MaterializeResult:
        from steering_assets.persona_space.materialize import CAPPING_FILE, materialize_capping_config

        store = storage.store()
        with reported_as_failure("capping_config"):
            source = _source_model(context, store, config)
            result, plan = materialize_capping_config(store, source, language_model.get_model(), language_model.get_tokenizer(),
                                                      language_model.model_name, config.layers, config.percentile, log=context.log.info)
        rows = [[layer, f"{tau:.3f}", f"{-tau:.3f}"] for layer, tau in zip(plan.layers, plan.taus)]
        return dg.MaterializeResult(metadata={
            "experiment": plan.experiment_id, "layers": str(list(plan.layers)), "sign": result.details["sign"],
            "thresholds": dg.MetadataValue.md(md_table(["layer", "tau (on -axis)", "floor (on the axis)"], rows)),
            "default_tokens": result.details["default_tokens"], "path": dg.MetadataValue.path(str(result.folder / CAPPING_FILE))})

    return capping_config


def _drift_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=DRIFT_KEY, deps=[AXIS_KEY, CAPPING_KEY, PERSONA_MODEL_KEY], group_name=GROUP, pool="gpu", kinds={"pytorch"},
        code_version="1",
        description=("Each assistant turn of the conversations in PERSONA_CONVERSATIONS_ROOT projected on the axis: the "
                     "trajectory per conversation, and the turns below the capping floor."),
    )
    def persona_drift(context: dg.AssetExecutionContext, config: DriftConfig, storage: ArtifactStorage,
                      language_model: LanguageModelResource, conversations: ConversationSource) -> dg.MaterializeResult:
        from steering_assets.persona_space.materialize import materialize_drift

        store = storage.store()
        with reported_as_failure("persona_drift"):
            source = _source_model(context, store, config)
            result, payload = materialize_drift(store, source, conversations.folder(), language_model.get_model(),
                                              language_model.get_tokenizer(), language_model.model_name, config.layer,
                                              log=context.log.info)
        return dg.MaterializeResult(metadata=drift_metadata(result, payload))

    return persona_drift


def drift_metadata(result: ArtifactResult, payload: dict[str, Any]) -> dict[str, Any]:
    floor = payload["floor"]
    found = payload["conversations"]

    def draw(ax) -> None:
        for t in found:
            ax.plot(range(1, len(t["projections"]) + 1), t["projections"], marker="o", markersize=3, label=t["id"][:30])
        if floor is not None:
            ax.axhline(floor, color="grey", linestyle=":", label="capping floor")

    rows = [[t["id"], " -> ".join(f"{x:.2f}" for x in t["projections"]), ", ".join(map(str, t["below_floor_turns"])) or "-"]
            for t in found]
    return {"layer": payload["layer"], "floor": floor, "conversations": len(found),
            "flagged_turns": result.details["flagged_turns"], "skipped_unchanged": result.skipped,
            "trajectories": _plot(draw, "assistant turn", "projection on the axis", f"drift at layer {payload['layer']}", "drift"),
            "turns": dg.MetadataValue.md(md_table(["conversation", "projection per assistant turn", "turns below the floor"], rows)),
            "path": dg.MetadataValue.path(str(result.folder))}


def _capping_eval_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=CAPPING_EVAL_KEY, deps=[CAPPING_KEY, DATASET_KEY, BASELINE_KEY, PERSONA_MODEL_KEY], group_name=GROUP, pool="gpu",
        kinds={"pytorch"}, code_version="1",
        check_specs=[dg.AssetCheckSpec("capping_moves_toward_default", asset=CAPPING_EVAL_KEY),
                     dg.AssetCheckSpec("capping_keeps_neutral_text", asset=CAPPING_EVAL_KEY)],
        description=("Capping beside adding the axis (at several strengths) and no intervention, on role-play and multi-turn "
                     "drift prompts, rated as the judged steering evaluation rates its methods (concept = the role: lower "
                     "is closer to the default assistant; instruction; fluency, 0-2), and its cost on neutral text."),
    )
    def capping_eval(context: dg.AssetExecutionContext, config: CappingEvalConfig, storage: ArtifactStorage,
                     language_model: LanguageModelResource, steering_judge: JudgeResource):
        from steering_assets.persona_space.capping_eval import CappingEvalSettings
        from steering_assets.persona_space.materialize_eval import materialize_capping_eval

        store = storage.store()
        fields = config.model_dump(exclude={"source_model"})
        settings = CappingEvalSettings(**{**fields, "addition_factors": tuple(fields["addition_factors"])})
        with reported_as_failure("capping_eval"):
            source = _source_model(context, store, config)
            result = materialize_capping_eval(store, source, language_model.get_model(), language_model.get_tokenizer(),
                                              language_model.model_name, steering_judge.judge(store.folder("steering", "judgments")),
                                              steering_judge.judge_name, settings, log=context.log.info)
        yield dg.MaterializeResult(metadata=capping_eval_metadata(result))
        yield from capping_checks(result.details, settings)

    return capping_eval


CAPPING_TABLE_HEADERS = ["method", "concept (role)", "instruction", "fluency", "assistant score", "generations"]


def capping_table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """The capping eval's method rows for display, as the judged steering evaluation's table shows its methods."""
    def cell(value: Any) -> Any:
        return "n/a" if value is None else f"{value:.2f}"

    return [[r["method"], cell(r["concept"]), cell(r["instruction"]), cell(r["fluency"]), cell(r["assistant_score"]),
             f"{r['rated']} rated" + (f", {r['degenerate']} degenerate" if r["degenerate"] else "")
             + (f", {r['item_errors']} item errors" if r["item_errors"] else "")] for r in rows]


def capping_eval_metadata(result: ArtifactResult) -> dict[str, Any]:
    d = result.details
    tables = {kind: dg.MetadataValue.md(md_table(CAPPING_TABLE_HEADERS, capping_table_rows(rows))) for kind, rows in d["tables"].items()}
    samples = [[s["role"], s["kind"], s["question"][:60], *(s[m]["reply"][:120] for m in d["methods"])] for s in d["samples"]]
    return {"methods_all_prompts": tables["all"], "methods_role_play": tables["role-play"], "methods_multi_turn": tables["multi-turn"],
            "perplexity_ratio": round(d["perplexity_ratio"], 4), "perplexity": dg.MetadataValue.json(d["perplexity"]),
            "neutral_unchanged": f"{d['neutral_equal']} of {d['neutral_prompts']} ({d['neutral_uncapped']} never capped)",
            "samples": dg.MetadataValue.md(md_table(["role", "prompt", "question", *d["methods"]], samples)),
            "experiment": d["experiment"], "roles_left_out": dg.MetadataValue.json(d.get("roles_left_out", {})),
            "skipped_unchanged": result.skipped, "path": dg.MetadataValue.path(str(result.folder))}


def capping_checks(d: dict[str, Any], settings: Any):
    by_method = {row["method"]: row for row in d["tables"]["all"]}
    unsteered, capped = by_method["unsteered"]["concept"], by_method["capped"]["concept"]
    toward = capped is not None and unsteered is not None and capped < unsteered
    yield dg.AssetCheckResult(check_name="capping_moves_toward_default", passed=bool(toward),
                              severity=dg.AssetCheckSeverity.WARN,
                              description="The capped replies' role (concept) rating is below the unsteered replies'.",
                              metadata={"concept_unsteered": unsteered, "concept_capped": capped})
    uncapped_changed = d["neutral_uncapped"] - d["neutral_uncapped_equal"]
    keeps = d["perplexity_ratio"] <= settings.max_perplexity_ratio and uncapped_changed == 0
    yield dg.AssetCheckResult(check_name="capping_keeps_neutral_text", passed=bool(keeps), severity=dg.AssetCheckSeverity.WARN,
                              metadata={"perplexity_ratio": round(d["perplexity_ratio"], 4), "bound": settings.max_perplexity_ratio,
                                        "never_capped_but_changed": uncapped_changed})
