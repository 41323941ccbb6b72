"""Dagster results shared by the asset families: input errors as Failures, per-partition results of a chunk."""

import contextlib
from typing import Any, Iterator, Mapping

import dagster as dg

from steering_assets.core.errors import InputError


@contextlib.contextmanager
def reported_as_failure(what: str):
    """Bad input (any ``InputError``) fails the step with its message only: no trace, no retries."""
    try:
        yield
    except InputError as err:
        raise dg.Failure(description=f"{what}: {err}", allow_retries=False) from err


def partition_results(context: dg.AssetExecutionContext, metadata: Mapping[str, Mapping[str, Any]],
                      skipped: Mapping[str, str] | None = None) -> Iterator:
    """One materialization per partition, with that partition's own metadata.

    A chunked run (a backfill of several partitions in one run, so one model load
    serves them all) records one output for its whole range; each partition's own
    event follows it, so the latest materialization of every partition carries its
    own numbers. ``skipped``: partitions of the run the asset had nothing to compute for,
    with why (the asset is declared ``output_required=False``). Alone in a run, such a
    partition is not materialised; in a chunk the range output (which Dagster records for
    every partition of the range, and which lets the next steps of the run go on) names them.
    """
    keys = list(context.partition_keys)
    skipped = dict(skipped or {})
    if not metadata:
        return
    if len(keys) == 1:
        yield dg.MaterializeResult(metadata=dict(metadata[keys[0]]))
        return
    yield dg.MaterializeResult(metadata={"chunk_partitions": dg.MetadataValue.json(keys),
                                         **({"not_computed": dg.MetadataValue.json(skipped)} if skipped else {})})
    for key in metadata:
        yield dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata=dict(metadata[key]))
    for key, why in skipped.items():  # its latest event then says why it holds no artifact
        yield dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata={"not_computed": why})


