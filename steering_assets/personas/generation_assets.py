"""Rollouts generated and judged inside the platform (assistant-axis's stages 1 and 3), per persona partition.

``{kind}/generated_rollouts`` asks the persona model every instruction x question of the
persona's instruction file and writes the replies where the persona datasets read rollouts;
``{kind}/rollout_scores`` has the judge rate them with the file's ``eval_prompt`` and writes the
score file beside them, so ``persona_dataset``'s score filter applies unchanged. Partitions are
the persona partitions (``<source_model>/<name>``): the instruction discovery adds one per
instruction file for the persona model, named by its short name (``ModelSource.display_name``
or ``PERSONA_ROLLOUT_MODEL_NAME``). A backfill runs in chunks, one model load per chunk.
"""

import dataclasses
from typing import Optional, Sequence

import dagster as dg
from pydantic import Field

from steering_assets.core.errors import InputError
from steering_assets.core.metadata import md_table
from steering_assets.formats.rollouts import ROLES, PersonaKind, PersonaRef
from steering_assets.partitions.personas import PARTITIONS_BY_KIND, materialize_chunk, rollout_scores_key
from steering_assets.persona_model.assets import PERSONA_MODEL_KEY
from steering_assets.resources.instructions import InstructionSource
from steering_assets.resources.judge import JudgeResource
from steering_assets.resources.rollout_generation import RolloutGeneratorResource
from steering_assets.resources.rollouts import PersonaRollouts
from steering_assets.resources.storage import ArtifactStorage

GENERATION_CHUNK = 8


class RolloutGenerationConfig(dg.Config):
    questions: Optional[int] = Field(default=None, gt=0, description="Ask only the first N questions (unset: all, as assistant-axis does).")
    max_new_tokens: int = Field(default=512, gt=0, description="assistant-axis: 512.")
    temperature: float = Field(default=0.7, ge=0, description="assistant-axis: 0.7; 0 is greedy decoding.")
    top_p: float = Field(default=0.9, gt=0, le=1, description="assistant-axis: 0.9.")
    seed: int = 0


class PartitionModelError(InputError, ValueError):
    """A generation partition of another source model than the persona model."""


def _checked_ref(ref: PersonaRef, model_name: str) -> PersonaRef:
    if ref.source_model != model_name:
        raise PartitionModelError(
            f"partition {ref.partition_key!r} holds rollouts of {ref.source_model!r}, but the persona model is {model_name!r}: "
            f"generated rollouts go to {model_name}/{ref.name} (set PERSONA_ROLLOUT_MODEL_NAME to name the folder otherwise)"
        )
    return ref


def _samples(rows: Sequence[dict], count: int = 3) -> dg.MetadataValue:
    table = [(r["label"], r["system_prompt"][:60], r["question"][:60], r["conversation"][-1]["content"][:160]) for r in rows[:count]]
    return dg.MetadataValue.md(md_table(["label", "instruction", "question", "reply"], table))


def build_generation_assets(kind: PersonaKind) -> list:
    """One persona kind's rollouts generated from its instruction files, and the judge's scores of them."""
    return [_generated_rollouts_asset(kind), _rollout_scores_asset(kind)]


def _generation_asset_args(kind: PersonaKind) -> dict:
    return {"partitions_def": PARTITIONS_BY_KIND[kind.name], "group_name": f"{kind.name}_rollouts", "code_version": "1",
            "backfill_policy": dg.BackfillPolicy.multi_run(max_partitions_per_run=GENERATION_CHUNK)}


def _generated_rollouts_asset(kind: PersonaKind) -> dg.AssetsDefinition:
    @dg.asset(
        key=[kind.name, "generated_rollouts"], deps=[PERSONA_MODEL_KEY], pool="gpu", **_generation_asset_args(kind),
        kinds={"pytorch", "jsonl"},
        description=(
            f"Replies of the persona model to every instruction x question of the {kind.column}'s instruction file "
            "(assistant-axis stage 1: temperature 0.7, top-p 0.9), written in the rollout layout the persona datasets "
            "read. Resumable: finished replies are cached, a re-run generates only what is missing."
        ),
    )
    def generated_rollouts(context: dg.AssetExecutionContext, config: RolloutGenerationConfig, instructions: InstructionSource,
                           rollout_generator: RolloutGeneratorResource, rollouts: PersonaRollouts, storage: ArtifactStorage):
        from steering_assets.formats.instructions import (
            QUESTIONS_FILE,
            instruction_path,
            read_instruction_file,
            read_questions,
        )
        from steering_assets.models.generation import SamplingSettings
        from steering_assets.personas.generation import ReplyCache, generate_rollouts, plan_rollouts, rollout_path

        root = instructions.folder()
        model_name = instructions.rollout_model_name(rollout_generator.source.display_name)
        settings = SamplingSettings(config.max_new_tokens, config.temperature, config.top_p, config.seed)
        system_role = rollout_generator.supports_system_role()
        generator = rollout_generator.generator()
        store = storage.store()

        def materialize(refs: Sequence[PersonaRef]) -> dict:
            results = {}
            shared = read_questions(root / QUESTIONS_FILE)[: config.questions] if kind is ROLES else None
            for ref in refs:
                _checked_ref(ref, model_name)
                spec = read_instruction_file(instruction_path(root, kind, ref.name), kind)
                if spec.questions is not None and config.questions:
                    spec = dataclasses.replace(spec, questions=spec.questions[: config.questions])
                requests = plan_rollouts(spec, shared, model_name, system_role)
                cache = ReplyCache(store.folder("generation", kind.name, ref.source_model, ref.name) / "replies.jsonl")
                out = rollout_path(rollouts.root, kind, ref.source_model, ref.name)
                results[ref.partition_key] = generate_rollouts(requests, generator, settings, out, cache, log=context.log.info)
            return results

        def metadata(outcome) -> dict:
            return {"rows": outcome.rows, "generated": outcome.generated, "reused_from_cache": outcome.reused,
                    "torn_cache_lines": outcome.torn_cache_lines, "responses_file": dg.MetadataValue.path(str(outcome.path)),
                    "generator": generator.name, "system_role": system_role, "samples": _samples(outcome.samples)}

        yield from materialize_chunk(context, kind, materialize, metadata)

    return generated_rollouts


def _rollout_scores_asset(kind: PersonaKind) -> dg.AssetsDefinition:
    scale = "0-3 role adherence (assistant-axis: 3 = fully in role)" if kind is ROLES else "0-100 trait expression, or REFUSAL"

    @dg.asset(
        key=rollout_scores_key(kind), deps=[dg.AssetKey([kind.name, "generated_rollouts"])], kinds={"openai", "json"},
        **_generation_asset_args(kind),
        description=(f"The judge's {scale} rating of every generated reply, with the instruction file's eval_prompt "
                     "(assistant-axis stage 3), written as the score file persona_dataset filters on. Unscored replies "
                     "are left out and counted; the judgment cache re-asks only them."),
    )
    def rollout_scores(context: dg.AssetExecutionContext, instructions: InstructionSource, judge: JudgeResource,
                       rollout_generator: RolloutGeneratorResource, rollouts: PersonaRollouts, storage: ArtifactStorage):
        from steering_assets.formats.instructions import instruction_path, read_instruction_file
        from steering_assets.personas.generation import rollout_path, scores_path
        from steering_assets.personas.rollout_scoring import ScoringOutcome, score_rollouts

        root = instructions.folder()
        model_name = instructions.rollout_model_name(rollout_generator.source.display_name)
        store = storage.store()

        def materialize(refs: Sequence[PersonaRef]) -> dict:
            scorer = judge.judge(store.folder("judgments"))
            results = {}
            for ref in refs:
                spec = read_instruction_file(instruction_path(root, kind, ref.name), kind)
                if spec.is_baseline:
                    # A backfill of every role includes default.json's: it is the contrast, nothing to score.
                    why = f"{ref.name} is a baseline role (no eval_prompt, never training data): its replies are not scored"
                    context.log.info(f"{ref.partition_key}: {why}")
                    results[ref.partition_key] = ScoringOutcome(
                        scores_path(rollouts.root, kind, ref.source_model, ref.name), 0, 0, not_scored=why)
                    continue
                results[ref.partition_key] = score_rollouts(
                    rollout_path(rollouts.root, kind, ref.source_model, ref.name), spec, scorer,
                    scores_path(rollouts.root, kind, ref.source_model, ref.name), model_name, log=context.log.info)
            return results

        yield from materialize_chunk(context, kind, metadata=lambda outcome: _scores_metadata(outcome, judge.judge_name),
                                     materialize=materialize)

    return rollout_scores


def _scores_metadata(outcome, judge_name: str) -> dict:
    if outcome.not_scored:
        return {"scored": 0, "not_scored": outcome.not_scored, "judge": judge_name}
    distribution = sorted(outcome.distribution.items(), key=lambda kv: float(kv[0]) if kv[0] != "REFUSAL" else -1)
    return {"scored": outcome.scored, "refusals": outcome.refusals, "unscored": len(outcome.unscored),
            "unscored_examples": dg.MetadataValue.json(dict(list(outcome.unscored.items())[:5])),
            "score_distribution": dg.MetadataValue.md(md_table(["score", "replies"], distribution)),
            "judge": judge_name, "scores_file": dg.MetadataValue.path(str(outcome.path))}
