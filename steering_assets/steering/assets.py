"""Dagster wrappers for steering vectors: one vector per persona, trained K personas at a time."""

from typing import Any, Optional

import dagster as dg
from pydantic import Field

from partitions.personas import PARTITIONS_BY_KIND
from resources.language_model import LanguageModelResource
from resources.storage import ArtifactStorage
from steering_assets.artifacts import ArtifactResult
from steering_assets.asset_helpers import partition_results, reported_as_failure
from steering_assets.personas.layout import PersonaKind, PersonaRef
from steering_assets.metadata import png_markdown
from steering_assets.steering.config import INTEROP_FILE, LOSS_CURVE_FILE, VECTOR_FILE, SteeringTrainingConfig

# A backfill chunk: this many personas share one model load and one batched training run.
PERSONAS_PER_RUN = 8


class SteeringVectorConfig(dg.Config):
    """Training settings (TRL SFT on a single residual-stream vector per persona)."""

    layer: Optional[int] = Field(default=None, description="Decoder layer to steer (default: the middle layer).")
    learning_rate: float = Field(default=5e-2, gt=0)
    max_steps: int = Field(default=200, gt=0)
    per_device_batch_size: int = Field(default=8, gt=0, description="Examples per persona per step.")
    gradient_accumulation_steps: int = Field(default=1, gt=0)
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
        "loss_curve": dg.MetadataValue.md(png_markdown(png, "loss curve")),
        "path": dg.MetadataValue.path(str(result.folder / VECTOR_FILE)),
        "interop_pt": dg.MetadataValue.path(str(result.folder / INTEROP_FILE)),
        "reused_existing_artifact": result.skipped,
    }


def build_steering_assets(kind: PersonaKind) -> list:
    partitions_def = PARTITIONS_BY_KIND[kind.name]
    split_key = dg.AssetKey([kind.name, "persona_training_split"])

    @dg.asset(
        key=[kind.name, "steering_vector"],
        deps=[split_key],
        partitions_def=partitions_def,
        group_name=f"{kind.name}_steering",
        kinds={"pytorch", "safetensors"},
        pool="gpu",
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=PERSONAS_PER_RUN),
        code_version="1",
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
        from steering_assets.steering.pipeline import materialize_steering_vectors

        keys = list(context.partition_keys)
        with reported_as_failure(", ".join(keys)):
            refs = [PersonaRef.from_partition_key(kind, key) for key in keys]
            results = materialize_steering_vectors(
                refs,
                storage.store(),
                language_model.get_model(),
                language_model.get_tokenizer(),
                language_model.model_name,
                config.training(),
                log=context.log.info,
            )
        yield from partition_results(context, {key: vector_metadata(results[key]) for key in keys})

    return [steering_vector]
