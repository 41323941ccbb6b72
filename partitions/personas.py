"""Persona partitions, discovered from the data root in either rollout layout.

Roles and traits are two dynamic partition sets keyed ``<source_model>/<name>``, so two
source models never collide. Why dynamic partitions filled by a sensor rather than a
static list computed at import: the code location loads without touching the data
root, a new ``{name}.jsonl`` becomes a partition on the next sensor tick with no code
change or reload, and partitions keep their history if a file is moved away.

The same scan also records a data version for every new or changed rollout file, so
the UI marks downstream datasets stale when their raw files change; each observation
says which layout (persona-subspace or assistant-axis) the files came from. A data root
holding neither layout is reported with what was expected, never as zero partitions in
silence.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import dagster as dg

from steering_assets.core.asset_results import partition_results, reported_as_failure
from steering_assets.formats.rollouts import (
    PERSONA_KINDS,
    ROLES,
    PersonaKind,
    PersonaRef,
    data_root_problem,
    discover_personas,
    rollout_data_version,
)
from steering_assets.resources.instructions import InstructionSource
from steering_assets.resources.language_model import ModelSource
from steering_assets.resources.rollouts import PersonaRollouts

ROLE_PARTITIONS = dg.DynamicPartitionsDefinition(name="roles")
TRAIT_PARTITIONS = dg.DynamicPartitionsDefinition(name="traits")
PARTITIONS_BY_KIND: dict[str, dg.DynamicPartitionsDefinition] = {"roles": ROLE_PARTITIONS, "traits": TRAIT_PARTITIONS}


def rollouts_asset_key(kind: PersonaKind) -> dg.AssetKey:
    return dg.AssetKey([kind.name, "persona_rollouts"])


def rollout_scores_key(kind: PersonaKind) -> dg.AssetKey:
    """The judge's scores of generated rollouts (``steering_assets.personas.generation_assets``)."""
    return dg.AssetKey([kind.name, "rollout_scores"])


@dataclass
class ScanResult:
    new_keys: dict[str, list[str]] = field(default_factory=dict)  # partition set -> keys to add
    observations: list[dg.AssetObservation] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # "path: reason" for files that cannot be partitions
    seen: dict[str, list] = field(default_factory=dict)  # the next cursor
    # Why the data root holds no rollouts at all (what was expected, what is there), else None.
    problem: str | None = None
    layouts: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> layout -> persona files


def _file_state(ref: PersonaRef, data_root: Path) -> list:
    state = []
    for path in (ref.responses_path(data_root), ref.scores_path(data_root)):
        try:
            stat = os.stat(path)
            state.append([stat.st_mtime_ns, stat.st_size])
        except FileNotFoundError:
            state.append(None)
    return state


def scan_data_root(instance: dg.DagsterInstance, data_root: Path | str, seen: dict[str, list]) -> ScanResult:
    """Find partitions to add and data versions to record since the state ``seen``.

    ``seen`` maps ``kind:partition_key`` to ``[file state, data version]``; files are
    re-hashed only when their modification time or size changed.
    """
    data_root = Path(data_root)
    result = ScanResult(seen=dict(seen), problem=data_root_problem(data_root))
    for kind_name, partitions_def in PARTITIONS_BY_KIND.items():
        kind = PERSONA_KINDS[kind_name]
        discovery = discover_personas(data_root, kind)
        result.rejected += [f"{path}: {reason}" for path, reason in discovery.rejected]
        counts: dict[str, int] = {}
        for layout in discovery.layouts.values():
            counts[layout] = counts.get(layout, 0) + 1
        result.layouts[kind_name] = counts
        existing = set(instance.get_dynamic_partitions(partitions_def.name))
        # Baseline roles (``default``, persona-subspace's ``0_default``/``1_default``) are partitions too: their
        # role vector is the default side of the assistant axis. Assets that do not apply to them skip them.
        found = discovery.personas + discovery.baselines
        result.new_keys[kind_name] = [r.partition_key for r in found + in_file_defaults(discovery) if r.partition_key not in existing]
        for ref in found:
            cursor_key = f"{kind_name}:{ref.partition_key}"
            state = _file_state(ref, data_root)
            previous = result.seen.get(cursor_key)
            if previous and previous[0] == state:
                continue
            version = rollout_data_version(ref, data_root)
            result.seen[cursor_key] = [state, version]
            if previous is None or previous[1] != version:
                result.observations.append(
                    dg.AssetObservation(
                        asset_key=rollouts_asset_key(kind),
                        partition=ref.partition_key,
                        tags={"dagster/data_version": version},
                        metadata={
                            "layout": discovery.layouts[ref.partition_key],
                            "responses_file": dg.MetadataValue.path(str(ref.responses_path(data_root))),
                        },
                    )
                )
    return result


def in_file_defaults(discovery: Any) -> list[PersonaRef]:
    """``<model>/default`` for each source model whose roles are in the persona-subspace layout with no baseline file:
    there the default assistant's replies are the ``default``-labelled rows inside every role file (the writer's
    include-default option, on by default), and its role vector averages those (``persona_space.materialize``)."""
    with_file = {ref.source_model for ref in discovery.baselines}
    models = {ref.source_model for ref in discovery.personas
              if ref.kind is ROLES and discovery.layouts.get(ref.partition_key) == "persona-subspace"}
    return [PersonaRef(ROLES, model, "default") for model in sorted(models - with_file)]


def sync_partitions(instance: dg.DagsterInstance, data_root: Path | str) -> ScanResult:
    """Do what one sensor tick does, directly against an instance (CLI and demo, no daemon needed)."""
    result = scan_data_root(instance, data_root, {})
    for kind_name, keys in result.new_keys.items():
        if keys:
            instance.add_dynamic_partitions(PARTITIONS_BY_KIND[kind_name].name, keys)
    for observation in result.observations:
        instance.report_runless_asset_event(observation)
    return result


@dg.sensor(
    name="persona_discovery_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Scans PERSONA_DATA_ROOT in both layouts ({model}/roles_240|traits_240/responses/{name}.jsonl, "
        "persona-subspace; {model}/responses/{name}.jsonl, assistant-axis): every new file becomes a role or "
        "trait partition, and every changed rollout or score file is recorded as a new data version of "
        "persona_rollouts. A root holding neither layout is reported with what was expected."
    ),
)
def persona_discovery_sensor(context: dg.SensorEvaluationContext, rollouts: PersonaRollouts) -> dg.SensorResult:
    seen = json.loads(context.cursor) if context.cursor else {}
    result = scan_data_root(context.instance, rollouts.root, seen)
    if result.problem:
        context.log.warning(result.problem)
    for line in result.rejected:
        context.log.warning(f"not a partition: {line}")
    requests = [
        PARTITIONS_BY_KIND[kind_name].build_add_request(keys) for kind_name, keys in result.new_keys.items() if keys
    ]
    return dg.SensorResult(
        dynamic_partitions_requests=requests,
        asset_events=result.observations,
        cursor=json.dumps(result.seen, separators=(",", ":")),
        skip_reason=None if requests or result.observations else (result.problem or "no new or changed persona files"),
    )


def instruction_partition_keys(instructions_root: Path | str, model_name: str) -> dict[str, list[str]]:
    """Persona partition keys (``<model_name>/<name>``) of every instruction file, per kind."""
    from steering_assets.formats.instructions import discover_instructions

    return {kind_name: [PersonaRef(PERSONA_KINDS[kind_name], model_name, name).partition_key
                        for name in discover_instructions(instructions_root, PERSONA_KINDS[kind_name])]
            for kind_name in PARTITIONS_BY_KIND}


def new_instruction_partitions(instance: dg.DagsterInstance, instructions_root: Path | str, model_name: str) -> dict[str, list[str]]:
    """The instruction files' partition keys that are not yet partitions, per kind."""
    new = {}
    for kind_name, keys in instruction_partition_keys(instructions_root, model_name).items():
        existing = set(instance.get_dynamic_partitions(PARTITIONS_BY_KIND[kind_name].name))
        new[kind_name] = [key for key in keys if key not in existing]
    return new


def sync_instruction_partitions(instance: dg.DagsterInstance, instructions_root: Path | str, model_name: str) -> dict[str, list[str]]:
    """Add a persona partition for every instruction file not yet one (what a sensor tick does); returns the keys added."""
    added = new_instruction_partitions(instance, instructions_root, model_name)
    for kind_name, keys in added.items():
        if keys:
            instance.add_dynamic_partitions(PARTITIONS_BY_KIND[kind_name].name, keys)
    return added


@dg.sensor(
    name="instruction_discovery_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Scans PERSONA_INSTRUCTIONS_ROOT (roles/instructions/*.json, traits/instructions/*.json): every new instruction "
        "file becomes a role or trait partition <model>/<name> of the persona model, ready for generated_rollouts."
    ),
)
def instruction_discovery_sensor(context: dg.SensorEvaluationContext, instructions: InstructionSource,
                                 model_source: ModelSource) -> dg.SensorResult:
    if not instructions.root:
        return dg.SensorResult(skip_reason="PERSONA_INSTRUCTIONS_ROOT is not set: no rollouts to generate")
    new = new_instruction_partitions(context.instance, instructions.folder(), instructions.rollout_model_name(model_source.display_name))
    requests = [PARTITIONS_BY_KIND[kind_name].build_add_request(keys) for kind_name, keys in new.items() if keys]
    return dg.SensorResult(dynamic_partitions_requests=requests, skip_reason=None if requests else "no new instruction files")


def materialize_chunk(
    context: dg.AssetExecutionContext,
    kind: PersonaKind,
    materialize: Callable[[Sequence[PersonaRef]], Mapping[str, Any]],
    metadata: Callable[[Any], Mapping[str, Any]],
    not_for_baselines: str | None = None,
) -> Iterator:
    """Run ``materialize`` on every persona of the run's partitions, then record each partition.

    ``not_for_baselines``: why the asset has nothing to compute for a baseline role (``default``:
    the default assistant's replies, never training data), or None when it applies to them. Such
    partitions are logged and get no artifact (the asset is declared ``output_required=False``;
    in a chunk their event says why, see ``partition_results``), so a backfill of every role
    partition never fails on the baseline.
    """
    refs = [PersonaRef.from_partition_key(kind, key) for key in context.partition_keys]
    skipped = {ref.partition_key: not_for_baselines for ref in refs if not_for_baselines is not None and ref.is_baseline}
    for key, why in skipped.items():
        context.log.info(f"{key}: not computed: {why}")
    refs = [ref for ref in refs if ref.partition_key not in skipped]
    if not refs:
        return
    with reported_as_failure(", ".join(ref.partition_key for ref in refs)):
        results = materialize(refs)
    yield from partition_results(context, {ref.partition_key: metadata(results[ref.partition_key]) for ref in refs}, skipped)


# Why the per-persona steering assets skip a baseline partition (see materialize_chunk).
BASELINE_NOT_TRAINED = ("a baseline role: the default assistant's replies are the negatives of every persona and the "
                        "default side of the assistant axis (roles/role_vector), not a persona to steer toward")
