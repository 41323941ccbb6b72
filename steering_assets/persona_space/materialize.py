"""Persona-space artifacts: role vectors per role partition, and the fan-ins over every stored role vector.

Layout under the artifact root (each folder written atomically with its manifest)::

    roles/role_vector/{source_model}/{role}/        role_vector.safetensors, {role}.pt (assistant-axis)
    persona_space/assistant_axis/{source_model}/    assistant_axis.pt (assistant-axis's axis file)
    persona_space/persona_pca/{source_model}/       persona_pca.json
    persona_space/capping_config/{source_model}/    capping_config.pt (assistant-axis's layout)
    persona_space/persona_drift/{source_model}/     drift.json

The fan-ins read the role vectors' files, never the rollouts, so a new role costs one role's
forward passes and then only the cheap fan-ins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from steering_assets.core.artifacts import (
    MANIFEST,
    ArtifactIntegrityError,
    ArtifactResult,
    ArtifactStore,
    fingerprint,
    write_json_atomic,
)
from steering_assets.formats.rollouts import ROLES, PersonaRef
from steering_assets.persona_space.axis import AssistantAxis, AxisAccumulator, AxisError, load_axis_file
from steering_assets.persona_space.role_vectors import DEFAULT_TYPE, ROLE_TYPE, RoleVectorError, in_context

CODE_VERSION = "1"
ROLE_VECTOR_FILE = "role_vector.safetensors"
AXIS_FILE = "assistant_axis.pt"
PCA_FILE = "persona_pca.json"
CAPPING_FILE = "capping_config.pt"
DRIFT_FILE = "drift.json"
# Every persona-subspace role file holds its own samples of the same default prompts and questions (5 x 240 = 1,200
# rows): one file's worth is the sample, so a role added later never changes the default vector (nor recomputes it).
IN_FILE_DEFAULT_ROWS = 1200


@dataclass(frozen=True)
class RoleVectorSettings:
    """``min_score``: a role's replies kept (assistant-axis: 3); ``min_replies``: fewer kept replies is an error
    (assistant-axis's ``--min_count``, 50); the default assistant keeps every reply."""

    min_score: int = 3
    min_replies: int = 50
    batch_size: int = 8
    max_length: int = 1024


def role_vector_folder(store: ArtifactStore, ref: PersonaRef) -> Path:
    return store.folder(ref.kind.name, "role_vector", ref.source_model, ref.name)


def space_folder(store: ArtifactStore, asset: str, source_model: str) -> Path:
    return store.folder("persona_space", asset, source_model)


def default_rows(store: ArtifactStore, ref: PersonaRef) -> tuple[Any, list[str], str]:
    """The default assistant's rows for baseline ``ref``, the fingerprints of the datasets they come from, and from where.

    From its baseline file's dataset when there is one (assistant-axis's ``responses/default.jsonl``,
    persona-subspace's ``0_default``/``1_default``); else, in a persona-subspace tree, the ``default``-labelled rows
    of the source model's stored role datasets, role by role in name order until ``IN_FILE_DEFAULT_ROWS`` are
    collected. Raises ``RoleVectorError`` when neither exists.
    """
    import polars as pl

    from steering_assets.personas.dataset import baseline_rows
    from steering_assets.personas.materialize import DATASET_FILE, dataset_folder, load_persona_dataset

    if (dataset_folder(store, ref) / MANIFEST).is_file():
        return load_persona_dataset(store, ref), [store.load_manifest(dataset_folder(store, ref))["fingerprint"]], "its baseline file"
    frames, prints = [], []
    roles = store.folder(ROLES.name, "persona_dataset", ref.source_model)
    for folder in sorted(p for p in roles.iterdir() if (p / MANIFEST).is_file()) if roles.is_dir() else []:
        if sum(f.height for f in frames) >= IN_FILE_DEFAULT_ROWS:
            break
        prints.append(store.load_manifest(folder)["fingerprint"])
        frames.append(baseline_rows(pl.read_parquet(folder / DATASET_FILE), ROLES))
    # Each role file's default rows are its own samples of the default prompts, so all of them are kept.
    rows = pl.concat(frames, how="vertical_relaxed") if frames else None
    if rows is None or rows.height == 0:
        raise RoleVectorError(
            f"{ref.partition_key}: no default assistant's replies: no baseline file's dataset (materialise roles/baseline_dataset "
            f"or this partition's persona_dataset) and no 'default'-labelled rows in the {len(frames)} stored role dataset(s) of "
            f"{ref.source_model} (persona-subspace writes them with include-default on)")
    return rows, prints, f"the 'default' rows of {len(frames)} role datasets"


def role_conversations(store: ArtifactStore, ref: PersonaRef, settings: RoleVectorSettings,
                       system_role: bool) -> tuple[list[list[dict[str, str]]], dict[str, Any]]:
    """The replies a role vector averages, in the context they were generated in, and how they were chosen."""
    import polars as pl

    from steering_assets.personas.materialize import load_persona_dataset

    if ref.is_baseline:
        frame, _, source = default_rows(store, ref)
        chosen, rule = frame, f"every reply (the default assistant), from {source}"
    else:
        frame = load_persona_dataset(store, ref)
        chosen = frame.filter(pl.col("label").is_in(list(ref.kind.default_keep_labels))
                              & (pl.col("extract_score").cast(pl.Float64, strict=False) >= settings.min_score))
        rule = f"label {list(ref.kind.default_keep_labels)}, score >= {settings.min_score}"
    conversations = [in_context(m, s, system_role) for m, s in zip(chosen["messages"].to_list(), chosen["system_prompt"].to_list())]
    return conversations, {"rows": frame.height, "kept": chosen.height, "rule": rule}


def materialize_role_vectors(refs: Sequence[PersonaRef], store: ArtifactStore, model: Any, tokenizer: Any, model_name: str,
                             settings: RoleVectorSettings = RoleVectorSettings(),
                             log: Callable[[str], None] = print) -> dict[str, ArtifactResult]:
    """Each role's ``[n_layers, d]`` mean reply activation (``role_vectors.reply_activations``), skipped when unchanged.

    Raises ``RoleVectorError`` for a role with fewer than ``min_replies`` kept replies.
    """
    from steering_assets.models.generation import supports_system_role
    from steering_assets.models.hooks import hidden_size, n_layers
    from steering_assets.persona_space.role_vectors import reply_activations
    from steering_assets.personas.materialize import dataset_folder

    system_role = supports_system_role(tokenizer)
    results = {}
    for ref in refs:
        prints = default_rows(store, ref)[1] if ref.is_baseline else [store.load_manifest(dataset_folder(store, ref))["fingerprint"]]
        key = fingerprint({"code": CODE_VERSION, "dataset": prints[0] if len(prints) == 1 else prints, "model": model_name,
                           "settings": settings.__dict__ if not ref.is_baseline else {"max_length": settings.max_length}})
        folder = role_vector_folder(store, ref)
        existing = store.current_manifest(folder, key)
        if existing is not None:
            results[ref.partition_key] = ArtifactResult(folder, existing, skipped=True)
            continue
        conversations, chosen = role_conversations(store, ref, settings, system_role)
        if not ref.is_baseline and len(conversations) < settings.min_replies:
            raise RoleVectorError(f"{ref.partition_key}: {len(conversations)} replies kept ({chosen['rule']}, of {chosen['rows']}); "
                                  f"a role vector needs at least min_replies={settings.min_replies} (assistant-axis: 50); lower it in the run "
                                  "config (ops.roles__role_vector.config.min_replies) or roll out more replies")
        log(f"{ref.partition_key}: residual stream of {len(conversations)} replies at all {n_layers(model)} layers")
        sums = reply_activations(model, tokenizer, conversations, batch_size=settings.batch_size, max_length=settings.max_length,
                                 model_name=model_name, progress=lambda done, total: log(f"{ref.partition_key}: {done}/{total} replies"))
        vector = sums.mean()
        details = {"model": model_name, "shape": list(vector.shape), "type": DEFAULT_TYPE if ref.is_baseline else ROLE_TYPE,
                   "replies": sums.n_replies, "tokens": sums.n_tokens, "empty_replies_skipped": sums.skipped,
                   "selection": chosen, "n_layers": n_layers(model), "hidden_size": hidden_size(model),
                   "norms": [round(float(x), 3) for x in np.linalg.norm(vector, axis=1)]}
        if sums.skipped:
            log(f"{ref.partition_key}: {sums.skipped} empty replies have no token to average and were left out")
        manifest = store.write_artifact(folder, {
            ROLE_VECTOR_FILE: lambda p, v=vector, d=details: _save_safetensors(v, d, p),
            f"{ref.name}.pt": lambda p, v=vector, r=ref, t=details["type"]: _save_role_pt(v, t, r.name, p),
        }, fingerprint_value=key, details=details)
        results[ref.partition_key] = ArtifactResult(folder, manifest, skipped=False)
    return results


def _save_safetensors(vector: np.ndarray, details: dict[str, Any], path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"vector": torch.from_numpy(vector)}, str(path), metadata={"model": details["model"], "type": details["type"]})


def _save_role_pt(vector: np.ndarray, kind: str, role: str, path: Path) -> None:
    import torch

    torch.save({"vector": torch.from_numpy(vector), "type": kind, "role": role}, path)


def read_role_vector(store: ArtifactStore, ref: PersonaRef) -> tuple[np.ndarray, dict[str, Any]]:
    """A stored role vector ``[n_layers, d]`` and its manifest (files verified against it); ``ArtifactIntegrityError``
    when it is incomplete."""
    from safetensors.numpy import load_file

    folder = role_vector_folder(store, ref)
    manifest = store.load_manifest(folder)
    return load_file(str(folder / ROLE_VECTOR_FILE))["vector"], manifest


@dataclass
class StoredVectors:
    """The role vectors a fan-in found for one source model, and the partitions it could not use (with why)."""

    source_model: str
    refs: list[PersonaRef] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


def stored_role_vectors(store: ArtifactStore, refs: Sequence[PersonaRef], source_model: str | None) -> StoredVectors:
    """The partitions of ``source_model`` (default: the only source model with role partitions) with a complete role
    vector. Raises ``RoleVectorError`` when ``source_model`` is unset and several source models have role vectors."""
    models = sorted({ref.source_model for ref in refs})
    if source_model is None:
        with_vectors = sorted({r.source_model for r in refs if (role_vector_folder(store, r) / MANIFEST).is_file()})
        if len(with_vectors) > 1:
            raise RoleVectorError(f"role vectors exist for several source models {with_vectors}: set source_model to one of them")
        source_model = (with_vectors or models or [None])[0]
    if source_model is None:
        raise RoleVectorError("no role partition exists yet: add role rollouts or instruction files, then materialise role_vector")
    found = StoredVectors(source_model)
    for ref in refs:
        if ref.source_model != source_model:
            continue
        try:
            store.load_manifest(role_vector_folder(store, ref), verify=False)  # read_role_vector verifies the files
            found.refs.append(ref)
        except ArtifactIntegrityError:
            found.missing[ref.partition_key] = "no role vector materialised"
    return found


def materialize_axis(store: ArtifactStore, refs: Sequence[PersonaRef], model_identity: str, source_model: str | None = None,
                     log: Callable[[str], None] = print) -> tuple[ArtifactResult, AssistantAxis, StoredVectors]:
    """The assistant axis from every stored role vector of the source model, streaming (one vector in memory at a time).

    Raises ``RoleVectorError`` for a vector from another model (naming both) or of another shape,
    and ``AxisError`` when the default assistant's vector or every role's is missing.
    """
    stored = stored_role_vectors(store, refs, source_model)
    accumulator = AxisAccumulator()
    prints = {}
    for ref in sorted(stored.refs, key=lambda r: r.name):
        vector, manifest = read_role_vector(store, ref)
        recorded = manifest["details"].get("model")
        if recorded != model_identity:
            raise RoleVectorError(f"{role_vector_folder(store, ref)}: role vector computed with model {recorded!r}, "
                                  f"but the persona model is {model_identity!r}: re-materialise role_vector for {ref.partition_key}")
        accumulator.add(ref.name, vector, ref.is_baseline, where=str(role_vector_folder(store, ref) / ROLE_VECTOR_FILE))
        prints[ref.partition_key] = manifest["fingerprint"]
    axis = accumulator.result()
    log(f"{stored.source_model}: assistant axis from {axis.n_default} default and {axis.n_roles} role vectors; "
        f"largest norm {axis.norms().max():.2f} at layer {int(axis.norms().argmax())}")
    folder = space_folder(store, "assistant_axis", stored.source_model)
    key = fingerprint({"code": CODE_VERSION, "vectors": prints})
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True), axis, stored
    details = {"model": model_identity, "source_model": stored.source_model, "defaults": accumulator.defaults,
               "roles": accumulator.roles, "n_default": axis.n_default, "n_roles": axis.n_roles,
               "norms": [round(float(x), 4) for x in axis.norms()], "missing": stored.missing}
    manifest = store.write_artifact(folder, {AXIS_FILE: axis.save}, fingerprint_value=key, details=details)
    return ArtifactResult(folder, manifest, skipped=False), axis, stored


def read_axis(store: ArtifactStore, source_model: str) -> tuple[AssistantAxis, dict[str, Any]]:
    folder = space_folder(store, "assistant_axis", source_model)
    try:
        manifest = store.load_manifest(folder)
    except ArtifactIntegrityError as err:
        raise AxisError(f"no assistant axis for {source_model}: materialise persona_space/assistant_axis first ({err})") from None
    return load_axis_file(folder / AXIS_FILE), manifest


def materialize_persona_pca(store: ArtifactStore, source_model: str, layer: int | None, n_components: int,
                            scaling: str) -> tuple[ArtifactResult, Any]:
    """PCA of the role vectors at ``layer`` (default: the layer where the axis is largest), read one role at a time."""
    from steering_assets.persona_space.space import persona_pca

    axis, axis_manifest = read_axis(store, source_model)
    details_axis = axis_manifest["details"]
    n_layers = axis.axis.shape[0]
    layer = int(axis.norms().argmax()) if layer is None else int(layer)
    if not 0 <= layer < n_layers:
        raise RoleVectorError(f"layer {layer} is outside the role vectors' {n_layers} layers (0-{n_layers - 1})")
    roles, rows, default_rows = [], [], []
    for name in details_axis["roles"] + details_axis["defaults"]:
        ref = PersonaRef.from_partition_key(ROLES, f"{source_model}/{name}")
        vector, _ = read_role_vector(store, ref)
        if ref.is_baseline:
            default_rows.append(vector[layer].copy())
        else:
            roles.append(name)
            rows.append(vector[layer].copy())  # a row, not a view keeping the whole file buffer alive
    space = persona_pca(roles, np.stack(rows), axis.axis[layer], layer, n_components, scaling,
                        np.mean(default_rows, axis=0) if default_rows else None)
    folder = space_folder(store, "persona_pca", source_model)
    key = fingerprint({"code": CODE_VERSION, "axis": axis_manifest["fingerprint"], "layer": layer, "k": n_components, "scaling": scaling})
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True), space
    payload = _space_payload(space)
    manifest = store.write_artifact(folder, {PCA_FILE: lambda p: write_json_atomic(payload, p)}, fingerprint_value=key,
                                    details=payload)
    return ArtifactResult(folder, manifest, skipped=False), space


def _space_payload(space: Any) -> dict[str, Any]:
    ends = {f"PC{i + 1}": dict(zip(("low", "high"), space.ends(i))) for i in range(min(3, space.scores.shape[1]))}
    return {
        "layer": space.layer, "scaling": space.scaling, "roles": space.roles,
        "variance_explained": [round(float(x), 4) for x in space.variance_explained],
        "pc1_axis_cosine": round(space.pc1_axis_cosine, 4), "pc1_flipped_to_align_with_axis": space.pc1_flipped,
        "scores": {role: [round(float(x), 4) for x in row] for role, row in zip(space.roles, space.scores)},
        "ends": ends,
        "axis_projection_ranked": [[role, round(value, 4)] for role, value in space.ranked_on_axis()],
        "default_axis_projection": None if space.default_projection is None else round(space.default_projection, 4),
    }


def default_conversations(store: ArtifactStore, source_model: str, defaults: Sequence[str], tokenizer: Any) -> list[list[dict[str, str]]]:
    """The replies of the default assistants ``defaults`` (the axis's), in the context they were generated in."""
    from steering_assets.models.generation import supports_system_role

    system_role = supports_system_role(tokenizer)
    out = []
    for name in defaults:
        ref = PersonaRef.from_partition_key(ROLES, f"{source_model}/{name}")
        out += role_conversations(store, ref, RoleVectorSettings(), system_role)[0]
    return out


def materialize_capping_config(store: ArtifactStore, source_model: str, model: Any, tokenizer: Any, model_name: str,
                               layers: Sequence[int] | None, percentile: float,
                               log: Callable[[str], None] = print) -> tuple[ArtifactResult, Any]:
    """Thresholds from the default replies' token projections at the capping layers, written as ``capping_config.pt``."""
    from steering_assets.models.hooks import check_layer, hidden_size, n_layers
    from steering_assets.persona_space.capping import (
        default_capping_layers,
        plan_from_axis,
        save_capping_config,
        token_projections,
    )

    axis, axis_manifest = read_axis(store, source_model)
    if axis.axis.shape != (n_layers(model), hidden_size(model)):
        raise AxisError(f"the axis of {source_model} is {axis.axis.shape}; the persona model is ({n_layers(model)}, {hidden_size(model)})")
    layers = sorted(set(layers)) if layers else default_capping_layers(n_layers(model))
    for layer in layers:
        check_layer(model, layer)
    conversations = default_conversations(store, source_model, axis_manifest["details"]["defaults"], tokenizer)
    folder = space_folder(store, "capping_config", source_model)
    key = fingerprint({"code": CODE_VERSION, "axis": axis_manifest["fingerprint"], "layers": layers, "p": percentile, "model": model_name})
    existing = store.current_manifest(folder, key)
    if existing is not None:
        from steering_assets.persona_space.capping import read_capping_config

        return ArtifactResult(folder, existing, skipped=True), read_capping_config(folder / CAPPING_FILE, n_layers(model), hidden_size(model))
    log(f"{source_model}: projections of {len(conversations)} default replies' tokens at layers {layers}")
    projections = token_projections(model, tokenizer, conversations, {layer: axis.unit(layer) for layer in layers}, model_name=model_name)
    plan = plan_from_axis(axis.axis, projections, percentile)
    details = {"experiment": plan.experiment_id, "layers": list(plan.layers), "percentile": percentile,
               "taus": [round(t, 4) for t in plan.taus], "floors": [round(-t, 4) for t in plan.taus],
               "default_tokens": int(next(iter(projections.values())).size), "default_replies": len(conversations),
               "sign": "capped direction v = -axis/|axis| (toward role-playing); tau = -quantile(default tokens' projection on "
                       "the unit axis, percentile): the projection on the axis is floored at -tau",
               "model": model_name}
    manifest = store.write_artifact(folder, {CAPPING_FILE: lambda p: save_capping_config(plan, p, n_layers(model), hidden_size(model), model_name)},
                                    fingerprint_value=key, details=details)
    return ArtifactResult(folder, manifest, skipped=False), plan


def materialize_drift(store: ArtifactStore, source_model: str, conversations_root: Path | str, model: Any, tokenizer: Any,
                      model_name: str, layer: int | None, log: Callable[[str], None] = print) -> tuple[ArtifactResult, dict[str, Any]]:
    """Every conversation's assistant turns on the axis at ``layer`` (default: the middle capping layer), flagged
    below the capping floor there when the capping config caps that layer; the artifact and ``drift.json``'s content."""
    import json

    from steering_assets.models.hooks import hidden_size, n_layers
    from steering_assets.persona_space.capping import read_capping_config
    from steering_assets.persona_space.drift import read_conversations, trajectories, turn_projections

    axis, axis_manifest = read_axis(store, source_model)
    capping = space_folder(store, "capping_config", source_model)
    plan = None
    if (capping / MANIFEST).is_file():
        store.load_manifest(capping)
        plan = read_capping_config(capping / CAPPING_FILE, n_layers(model), hidden_size(model))
    if layer is None:
        layer = plan.middle_layer if plan else int(axis.norms().argmax())
    conversations = read_conversations(conversations_root)
    floor = plan.floor(layer) if plan else None
    folder = space_folder(store, "persona_drift", source_model)
    key = fingerprint({"code": CODE_VERSION, "axis": axis_manifest["fingerprint"], "layer": layer, "floor": floor,
                       "model": model_name, "conversations": [c.messages for c in conversations]})
    existing = store.current_manifest(folder, key)
    if existing is not None:
        return ArtifactResult(folder, existing, skipped=True), json.loads((folder / DRIFT_FILE).read_text(encoding="utf-8"))
    log(f"{source_model}: {len(conversations)} conversations projected on the axis at layer {layer}")
    projections = turn_projections(model, tokenizer, conversations, layer, axis.unit(layer), model_name=model_name,
                                   progress=lambda done, total: log(f"drift: {done}/{total} conversations"))
    found = trajectories(conversations, projections, floor)
    payload = {"layer": layer, "floor": floor, "capping_experiment": plan.experiment_id if plan else None,
               "conversations": [{"id": t.conversation.id, "file": t.conversation.file, "line": t.conversation.line,
                                  "projections": [round(x, 4) for x in t.projections], "below_floor_turns": t.below,
                                  "last_user_turn": next((m["content"] for m in reversed(t.conversation.messages) if m["role"] == "user"), "")[:200]}
                                 for t in found]}
    manifest = store.write_artifact(folder, {DRIFT_FILE: lambda p: write_json_atomic(payload, p)}, fingerprint_value=key,
                                    details={"layer": layer, "floor": floor, "conversations": len(found),
                                             "flagged_turns": sum(len(t.below) for t in found)})
    return ArtifactResult(folder, manifest, skipped=False), payload

