"""Dagster wrappers for steering vectors: one vector per persona, trained K personas at a time."""

from dataclasses import dataclass
from typing import Any, Optional

import dagster as dg
from pydantic import Field

from steering_assets.core.artifacts import ArtifactResult
from steering_assets.core.asset_results import reported_as_failure
from steering_assets.core.metadata import md_table, png_markdown
from steering_assets.formats.rollouts import PersonaKind, PersonaRef
from steering_assets.partitions.personas import BASELINE_NOT_TRAINED, PARTITIONS_BY_KIND, materialize_chunk
from steering_assets.persona_model.assets import PERSONA_MODEL_KEY
from steering_assets.resources.encoder import SentenceEncoderResource
from steering_assets.resources.judge import JudgeResource
from steering_assets.resources.language_model import LanguageModelResource
from steering_assets.resources.storage import ArtifactStorage
from steering_assets.steering.config import INTEROP_FILE, LOSS_CURVE_FILE, VECTOR_FILE, SteeringTrainingConfig

# A backfill chunk: this many personas share one model load and one batched training run (PERSONA_PERSONAS_PER_RUN).
PERSONAS_PER_RUN = 8


class SteeringVectorConfig(dg.Config):
    """Training settings (TRL SFT on a single residual-stream vector per persona)."""

    layer: Optional[int] = Field(default=None, description="Decoder layer to steer (default: the middle layer).")
    learning_rate: float = Field(default=5e-2, gt=0)
    max_steps: int = Field(default=200, gt=0)
    epochs: Optional[float] = Field(default=None, gt=0, description="Passes over the largest split; overrides max_steps when set.")
    per_device_batch_size: int = Field(default=8, gt=0, description="Examples per persona per step.")
    gradient_accumulation_steps: int = Field(
        default=1, gt=0, description="Micro-batches per optimizer step; each persona's loss is its mean over all their reply tokens."
    )
    lr_scheduler_type: str = Field(default="cosine")
    warmup_steps: int = Field(default=10, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, ge=0, description="Per-persona gradient clip norm (0: off).")
    eval_steps: int = Field(default=25, gt=0, description="Validate every N steps.")
    save_steps: int = Field(default=25, gt=0, description="Checkpoint every N steps (a multiple of eval_steps).")
    early_stopping_patience: int = Field(default=3, ge=0, description="Validations without improvement before stopping (0: off).")
    max_length: int = Field(default=1024, gt=0, description="Tokens per example (longer ones are truncated).")
    seed: int = 42

    def training(self) -> SteeringTrainingConfig:
        return SteeringTrainingConfig(**self.model_dump())


class ActivationVectorConfig(dg.Config):
    rows: int = Field(default=256, gt=0, description="Replies averaged on each side (persona, baseline).")
    seed: int = 0


class SteeringEvalConfig(dg.Config):
    """How steering vectors are evaluated."""

    coefficients: list[float] = Field(
        default=[0.0, 0.125, 0.25, 0.5, 1.0],
        description="Steering strengths to generate at, in units of the layer's typical residual-stream norm (0 = unsteered); "
        "a random direction is generated at the same strengths as the baseline.")
    n_prompts: int = Field(default=16, gt=0, description="Neutral prompts (baseline questions) to generate from.")
    max_new_tokens: int = Field(default=48, gt=0)
    temperature: float = Field(default=0.7, gt=0)
    top_p: float = Field(default=0.9, gt=0, le=1)
    held_out_rows: int = Field(default=120, gt=0, description="Held-out rows per class for the projection probe.")
    batch_size: int = Field(default=16, gt=0)
    seed: int = 0
    effect_min_probability: float = Field(
        default=0.5, ge=0, le=1, description="An effect needs the target persona's classifier probability at least this high.")
    effect_min_ratio: float = Field(
        default=2.0, ge=1, description="... and at least this many times the unsteered and the random direction's.")

    def evaluation(self):
        from steering_assets.steering.evaluation import EvaluationConfig

        values = self.model_dump()
        values["coefficients"] = tuple(sorted(set(values["coefficients"]) | {0.0}))
        return EvaluationConfig(**values)


class JudgedEvalConfig(dg.Config):
    """The judge-scored evaluation (AxBench protocol; README, "Judge-scored steering evaluation")."""

    factors: list[float] = Field(
        default=[0.125, 0.25, 0.5, 1.0],
        description="Steering strengths to sweep, in units of the layer's typical residual-stream norm (the vector's "
        "direction is scaled to factor x that norm).",
    )
    instructions: int = Field(default=16, gt=1, description="Held-out instructions: half choose the factor, half report.")
    min_per_half: int = Field(default=2, gt=0, description="Fewest instructions per half before the evaluation refuses.")
    max_new_tokens: int = Field(default=48, gt=0, description="Tokens per greedy generation.")
    batch_size: int = Field(default=32, gt=0, description="Generations per batched generate call (all settings mixed).")
    norm_rows: int = Field(default=32, gt=0, description="Baseline replies the typical residual norm is measured on.")
    seed: int = 0

    def evaluation(self):
        from steering_assets.steering.judged_eval import JudgedEvalConfig as Settings

        values = self.model_dump()
        values["factors"] = tuple(sorted(set(values["factors"])))
        return Settings(**values)


def judged_eval_metadata(result: ArtifactResult) -> dict[str, Any]:
    from steering_assets.steering.judged_eval import JUDGED_PLOT_FILE, METHOD_TABLE_HEADERS, method_table_rows

    d = result.details
    ratio = d["norm_ratio"]
    metadata = {
        "methods": dg.MetadataValue.md(md_table(METHOD_TABLE_HEADERS, method_table_rows(d["table"]))),
        "best_method": d["winner"] or "n/a",
        # Which judge rated (the steering judge may differ from the vetting one); older artifacts do not say.
        "judge": d.get("judge", "not recorded"),
        "scores_by_factor": dg.MetadataValue.md(png_markdown((result.folder / JUDGED_PLOT_FILE).read_bytes(), "scores by factor")),
        "layer": d["layer"],
        "residual_norm": dg.MetadataValue.float(round(d["residual_norm"], 3)),
        "trained_norm_over_residual": dg.MetadataValue.float(round(ratio["trained"], 4)),
        "activation_norm_over_residual": dg.MetadataValue.float(round(ratio["activation"], 4)),
        "instructions": dg.MetadataValue.json(d["instructions"]),
        "prompted_system_prompt": d["prompted"]["system_prompt"] or f"n/a: {d['prompted']['why']}",
        "generations": d["generations"],
        "judge_calls": d["judge_calls"],
        "item_errors": len(d["item_errors"]),
        "example_generations": dg.MetadataValue.md(md_table(
            ["setting", "instruction", "reply", "ratings"],
            [(e["setting"], e["instruction"], e["reply"][:160],
              e.get("error") or f"{e['concept']}/{e['instruction']}/{e['fluency']}") for e in d["examples"]])),
        "path": dg.MetadataValue.path(str(result.folder)),
        "reused_existing_artifact": result.skipped,
    }
    for row in d["table"]:
        if row.get("harmonic_mean") is not None:
            metadata[f"{row['method']}_harmonic_mean"] = dg.MetadataValue.float(round(row["harmonic_mean"], 3))
    if d["item_errors"]:
        metadata["item_error_examples"] = dg.MetadataValue.md(md_table(
            ["setting", "instruction", "error"], [(e["setting"], e["instruction"], e["error"]) for e in d["item_errors"][:10]]))
    return metadata


def eval_metadata(result: ArtifactResult) -> dict[str, Any]:
    d = result.details
    steering, probe, perplexity = d["steering"], d["probe"], d["perplexity"]
    randoms = steering.get("random_probability") or [None] * len(steering["coefficients"])
    sweep = [(c, round(p, 3), "n/a" if r is None else round(r, 3))
             for c, p, r in zip(steering["coefficients"], steering["target_probability"], randoms)]
    examples = [(c, text[:160]) for c, texts in steering["examples"].items() for text in texts[:1]]
    return {
        # A skipped probe or an undefined rank correlation is shown as its reason, never as a number.
        **{f"probe_{k}": dg.MetadataValue.float(float(v)) if isinstance(v, (int, float)) else str(v)
           for k, v in probe.items() if k not in ("n_test", "n_rows") and v is not None},
        **({"probe_rows": probe["n_rows"]} if "n_rows" in probe else {}),
        "perplexity_with_vector": dg.MetadataValue.float(perplexity["with_vector"]),
        "perplexity_zero_vector": dg.MetadataValue.float(perplexity["zero_vector"]),
        "target_probability_unsteered": dg.MetadataValue.float(steering["unsteered_probability"]),
        "target_probability_steered": dg.MetadataValue.float(steering["best_probability"]),
        "best_coefficient": dg.MetadataValue.float(steering["best_coefficient"]),
        "shows_steering_effect": steering["shows_effect"],
        **({"steering_effect_bar": dg.MetadataValue.json(steering["effect_bar"])} if "effect_bar" in steering else {}),
        "coefficient_sweep": dg.MetadataValue.md(md_table(
            ["coefficient (x typical residual norm)", "p(target persona)", "p(target), random direction"], sweep)),
        **({"target_probability_random_direction": dg.MetadataValue.float(float(steering["random_at_best"]))}
           if steering.get("random_probability") else {}),
        "example_generations": dg.MetadataValue.md(md_table(["coefficient", "generation"], examples)),
        "cosine_with_activation_vector": dg.MetadataValue.float(d["cosine_with_activation_vector"]),
        **(baselines_metadata(d["baselines"]) if "baselines" in d else {}),
        "path": dg.MetadataValue.path(str(result.folder)),
        "reused_existing_artifact": result.skipped,
    }


def baselines_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    """Which baseline sources gave the negatives (baseline files, the personas' own baseline rows) and how many rows."""
    metadata = {
        "baseline_sources": ", ".join(summary["sources"]),
        "baseline_rows_by_source": dg.MetadataValue.json(summary["rows_by_source"]),
        "baseline_datasets": dg.MetadataValue.md(
            md_table(["source", "dataset", "rows"], [(d["source"], d["dataset"], d["rows"]) for d in summary["datasets"]])
        ),
        "baseline_rows_available": summary["rows_available"],
    }
    for key in ("rows_used", "probe_negatives", "prompt_questions"):
        if key in summary:
            metadata[f"baseline_{key}"] = summary[key]
    return metadata


def export_metadata(details: dict[str, Any]) -> dict[str, Any]:
    """The export files written beside the vector, and any left out with the reason (e.g. llama.cpp and block 0)."""
    return {
        "exports": dg.MetadataValue.json(details.get("exports", [])),
        **({"not_exported": dg.MetadataValue.json(details["not_exported"])} if details.get("not_exported") else {}),
    }


def activation_metadata(result: ArtifactResult) -> dict[str, Any]:
    return {
        "layer": result.details["layer"],
        "vector_norm": dg.MetadataValue.float(result.details["norm"]),
        **(baselines_metadata(result.details["baselines"]) if "baselines" in result.details else {}),
        **export_metadata(result.details),
        "path": dg.MetadataValue.path(str(result.folder)),
        "reused_existing_artifact": result.skipped,
    }


def vector_metadata(result: ArtifactResult) -> dict[str, Any]:
    d = result.details
    png = (result.folder / LOSS_CURVE_FILE).read_bytes()
    return {
        "best_validation_loss": dg.MetadataValue.float(d["best_validation_loss"]) if d["best_validation_loss"] is not None else None,
        "best_step": d["best_step"],
        "steps": d["steps"],
        "layer": d["layer"],
        "vector_norm": dg.MetadataValue.float(d["vector_norm"]),
        "tokens_per_second": dg.MetadataValue.float(d["tokens_per_second"]),
        "trained_with_personas": d["trained_with"],
        "assistant_only_loss": d["assistant_only_loss"],
        "assistant_mask": d.get("assistant_mask"),
        "loss_token_share": dg.MetadataValue.float(d["loss_token_share"]) if d.get("loss_token_share") is not None else None,
        "rows_without_loss_tokens": d.get("rows_without_loss_tokens", 0),
        **export_metadata(d),
        "loss_curve": dg.MetadataValue.md(png_markdown(png, "loss curve")),
        "path": dg.MetadataValue.path(str(result.folder / VECTOR_FILE)),
        "interop_pt": dg.MetadataValue.path(str(result.folder / INTEROP_FILE)),
        "reused_existing_artifact": result.skipped,
    }


def rows_table(rows: list[dict[str, Any]]) -> dg.MetadataValue:
    """A list of same-keyed dicts as a markdown table (one column per key)."""
    return dg.MetadataValue.md(md_table(list(rows[0]) if rows else ["persona"], [list(r.values()) for r in rows]))


@dataclass(frozen=True)
class SteeringKeys:
    """The asset keys one persona kind's steering assets use, and what they share."""

    kind: PersonaKind
    personas_per_run: int

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.kind.name, name])

    @property
    def partitions_def(self) -> dg.DynamicPartitionsDefinition:
        return PARTITIONS_BY_KIND[self.kind.name]

    @property
    def group(self) -> str:
        return f"{self.kind.name}_steering"

    @property
    def split(self) -> dg.AssetKey:
        return self.key("persona_training_split")

    @property
    def dataset(self) -> dg.AssetKey:
        # Negatives come from the baseline files (baseline_dataset) and from each persona's own
        # baseline rows (roles "default", traits "neutral"), which live in its persona_dataset.
        return self.key("persona_dataset")

    baseline = dg.AssetKey(["roles", "baseline_dataset"])

    def model_asset(self) -> dict[str, Any]:
        """Model assets: one persona per partition, K per run (one model load), one at a time on the device."""
        return {
            "partitions_def": self.partitions_def,
            "group_name": self.group,
            "pool": "gpu",
            "backfill_policy": dg.BackfillPolicy.multi_run(max_partitions_per_run=self.personas_per_run),
            "code_version": "1",
            # A baseline partition (the default assistant) has nothing to steer toward: it is skipped.
            "output_required": False,
        }

    def every_persona(self, context: dg.AssetExecutionContext) -> list[PersonaRef]:
        """Every persona partition of the kind, baselines left out (they are never steered)."""
        refs = [PersonaRef.from_partition_key(self.kind, k) for k in context.instance.get_dynamic_partitions(self.partitions_def.name)]
        return [ref for ref in refs if not ref.is_baseline]


def build_steering_assets(kind: PersonaKind, personas_per_run: int = PERSONAS_PER_RUN) -> list:
    """One persona kind's steering assets: trained and activation vectors, the persona classifier, the
    classifier-scored and judge-scored evaluations and their summary tables."""
    keys = SteeringKeys(kind, personas_per_run)
    return [builder(keys) for builder in (
        _steering_vector_asset, _persona_classifier_asset, _activation_vector_asset, _steering_eval_asset,
        _eval_summary_asset, _judged_eval_asset, _method_comparison_asset)]


def _steering_vector_asset(keys: SteeringKeys) -> dg.AssetsDefinition:
    kind = keys.kind

    @dg.asset(
        key=keys.key("steering_vector"),
        deps=[keys.split, PERSONA_MODEL_KEY],
        kinds={"pytorch", "safetensors"},
        **keys.model_asset(),
        description=(
            "One trained steering vector per persona: a single vector added to the residual stream at one layer "
            "of the frozen model, learned with TRL's SFTTrainer on the training split. A backfill chunk trains "
            "its personas together in the same forward passes."
        ),
    )
    def steering_vector(
        context: dg.AssetExecutionContext,
        config: SteeringVectorConfig,
        storage: ArtifactStorage,
        language_model: LanguageModelResource,
    ):
        from steering_assets.steering.trained_vectors import materialize_steering_vectors

        yield from materialize_chunk(
            context,
            kind,
            lambda refs: materialize_steering_vectors(
                refs, storage.store(), language_model.get_model(), language_model.get_tokenizer(),
                language_model.model_name, config.training(), log=context.log.info,
            ),
            vector_metadata,
            not_for_baselines=BASELINE_NOT_TRAINED,
        )

    return steering_vector


def _persona_classifier_asset(keys: SteeringKeys) -> dg.AssetsDefinition:
    kind = keys.kind

    @dg.asset(
        key=keys.key("persona_classifier"),
        deps=[keys.split, keys.dataset, keys.baseline],
        group_name=keys.group,
        kinds={"sklearn"},
        code_version="1",
        description=(
            "Which persona wrote this text? Logistic regression on all-MiniLM-L6-v2 embeddings of every persona's "
            "training answers plus the baseline assistant's (baseline files and the personas' own baseline rows); "
            "scores steered generations."
        ),
    )
    def persona_classifier(
        context: dg.AssetExecutionContext, storage: ArtifactStorage, sentence_encoder: SentenceEncoderResource
    ) -> dg.MaterializeResult:
        from steering_assets.personas.materialize import split_folder
        from steering_assets.steering.persona_classifier import materialize_persona_classifier

        store = storage.store()
        refs = [ref for ref in keys.every_persona(context) if (split_folder(store, ref) / "manifest.json").is_file()]
        with reported_as_failure(kind.name):
            result = materialize_persona_classifier(
                kind, refs, store, sentence_encoder.get_encoder(), sentence_encoder.model_path or "all-MiniLM-L6-v2"
            )
        return dg.MaterializeResult(metadata=classifier_metadata(result))

    return persona_classifier


def classifier_metadata(result: ArtifactResult) -> dict[str, Any]:
    details = result.details
    return {
        "held_out_accuracy": dg.MetadataValue.float(details["held_out_accuracy"]),
        "classes": dg.MetadataValue.json(details["classes"]),
        "examples": details["examples"],
        **{
            key: dg.MetadataValue.json(details[key]) if isinstance(details[key], dict) else details[key]
            for key in ("held_out_examples", "examples_per_class", "split") if key in details
        },
        **(baselines_metadata(details["baselines"]) if "baselines" in details else {}),
        "reused_existing_artifact": result.skipped,
    }


def _activation_vector_asset(keys: SteeringKeys) -> dg.AssetsDefinition:
    kind = keys.kind

    @dg.asset(
        key=keys.key("persona_activation_vector"),
        deps=[keys.key("steering_vector"), keys.dataset, keys.baseline, PERSONA_MODEL_KEY],
        kinds={"pytorch"},
        **keys.model_asset(),
        description=(
            "The classic difference-of-means vector: mean residual activation over the persona's replies minus the "
            "mean over the baseline assistant's (the source model's baseline files and the persona's own baseline "
            "rows), at the trained vector's layer."
        ),
    )
    def persona_activation_vector(
        context: dg.AssetExecutionContext,
        config: ActivationVectorConfig,
        storage: ArtifactStorage,
        language_model: LanguageModelResource,
    ):
        from steering_assets.steering.activation_vectors import materialize_activation_vectors

        yield from materialize_chunk(
            context,
            kind,
            lambda refs: materialize_activation_vectors(
                refs, storage.store(), language_model.get_model(), language_model.get_tokenizer(),
                language_model.model_name, rows=config.rows, seed=config.seed, log=context.log.info,
            ),
            activation_metadata,
            not_for_baselines=BASELINE_NOT_TRAINED,
        )

    return persona_activation_vector


def _steering_eval_asset(keys: SteeringKeys) -> dg.AssetsDefinition:
    kind = keys.kind

    @dg.asset(
        key=keys.key("steering_eval"),
        deps=[keys.key("steering_vector"), keys.key("persona_activation_vector"), keys.key("persona_classifier"),
              keys.split, keys.dataset, keys.baseline, PERSONA_MODEL_KEY],
        kinds={"pytorch", "sklearn"},
        **keys.model_asset(),
        description=(
            "The vector as a linear probe (held-out replies vs baseline; trait score regression), validation "
            "perplexity with the vector vs a zero vector, steered generations scored by the persona classifier "
            "over a coefficient sweep, and its cosine with the activation vector."
        ),
    )
    def steering_eval(
        context: dg.AssetExecutionContext,
        config: SteeringEvalConfig,
        storage: ArtifactStorage,
        language_model: LanguageModelResource,
        sentence_encoder: SentenceEncoderResource,
    ):
        from steering_assets.steering.classifier_eval import materialize_steering_evals

        yield from materialize_chunk(
            context,
            kind,
            lambda refs: materialize_steering_evals(
                refs, storage.store(), language_model.get_model(), language_model.get_tokenizer(),
                language_model.model_name, sentence_encoder.get_encoder(), config.evaluation(), log=context.log.info,
            ),
            eval_metadata,
            not_for_baselines=BASELINE_NOT_TRAINED,
        )

    return steering_eval


def _eval_summary_asset(keys: SteeringKeys) -> dg.AssetsDefinition:
    @dg.asset(
        key=keys.key("steering_eval_summary"),
        deps=[keys.key("steering_eval")],
        group_name=keys.group,
        code_version="1",
        description="Every evaluated persona in one table: probe quality, perplexity, steering effect, cosine.",
    )
    def steering_eval_summary(context: dg.AssetExecutionContext, storage: ArtifactStorage) -> dg.MaterializeResult:
        from steering_assets.steering.classifier_eval import evaluation_table

        rows = evaluation_table(storage.store(), keys.every_persona(context))
        return dg.MaterializeResult(
            metadata={
                "summary": rows_table(rows),
                "personas_evaluated": len(rows),
                "personas_with_steering_effect": sum(r["effect"] == "yes" for r in rows),
            }
        )

    return steering_eval_summary


def _judged_eval_asset(keys: SteeringKeys) -> dg.AssetsDefinition:
    kind = keys.kind

    @dg.asset(
        key=keys.key("steering_judged_eval"),
        deps=[keys.key("steering_vector"), keys.key("persona_activation_vector"), keys.split, keys.dataset,
              keys.baseline, PERSONA_MODEL_KEY],
        kinds={"pytorch"},
        **keys.model_asset(),
        description=(
            "The trained vector against the activation vector, the persona's own system prompt and no steering, on "
            "held-out instructions: the judge rates each greedy generation 0-2 for the persona, the instruction and "
            "fluency (AxBench); each vector's factor is chosen on half the instructions and all methods are "
            "reported on the other half."
        ),
    )
    def steering_judged_eval(
        context: dg.AssetExecutionContext,
        config: JudgedEvalConfig,
        storage: ArtifactStorage,
        language_model: LanguageModelResource,
        steering_judge: JudgeResource,
    ):
        from steering_assets.steering.judged_eval import materialize_judged_evals

        store = storage.store()
        yield from materialize_chunk(
            context,
            kind,
            lambda refs: materialize_judged_evals(
                refs, store, language_model.get_model(), language_model.get_tokenizer(), language_model.model_name,
                steering_judge.judge(store.folder("steering", "judgments")), steering_judge.judge_name,
                config.evaluation(),
                log=context.log.info,
            ),
            judged_eval_metadata,
            not_for_baselines=BASELINE_NOT_TRAINED,
        )

    return steering_judged_eval


def _method_comparison_asset(keys: SteeringKeys) -> dg.AssetsDefinition:
    @dg.asset(
        key=keys.key("steering_method_comparison"),
        deps=[keys.key("steering_judged_eval")],
        group_name=keys.group,
        code_version="1",
        description="Every judged persona in one table: trained vs activation vs prompted vs unsteered, and wins per method.",
    )
    def steering_method_comparison(context: dg.AssetExecutionContext, storage: ArtifactStorage) -> dg.MaterializeResult:
        from steering_assets.steering.judged_eval import comparison_table

        rows, wins = comparison_table(storage.store(), keys.every_persona(context))
        return dg.MaterializeResult(
            metadata={
                "comparison": rows_table(rows),
                "wins": dg.MetadataValue.md(md_table(["method", "personas won"], list(wins.items()))),
                **{f"wins_{method}": count for method, count in wins.items()},
                "personas_judged": len(rows),
            }
        )

    return steering_method_comparison
