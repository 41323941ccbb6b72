"""The subcommands of ``steering-assets`` other than the deployment ones (``deployment/commands.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from steering_assets.cli.launcher import (
    Launcher,
    backfill_persona_datasets,
    instance_from_home,
    judged_stage,
    steering_stage,
)
from steering_assets.cli.reports import print_method_comparison
from steering_assets.core.artifacts import ArtifactStore


def _env(name: str) -> str:
    """A setting the command needs (read through ``Settings``); exits naming it when unset."""
    from steering_assets.core.settings import Settings, SettingsError, field_of

    try:
        settings = Settings.from_env()
    except SettingsError as err:
        sys.exit(f"error: {err}")
    value = getattr(settings, field_of(name))
    if not value:
        sys.exit(f"{name} is not set; see .env.example and docs/settings.md for the settings the platform reads")
    return value


def cmd_sync(args: argparse.Namespace) -> int:
    from steering_assets.partitions.personas import sync_partitions

    scan = sync_partitions(instance_from_home(), _env("PERSONA_DATA_ROOT"))
    for kind_name, keys in scan.new_keys.items():
        print(f"{kind_name}: {len(keys)} new partitions" + (f" ({', '.join(keys[:5])}{', …' if len(keys) > 5 else ''})" if keys else ""))
    for kind_name, counts in scan.layouts.items():
        if counts:
            print(f"{kind_name} files by layout: " + ", ".join(f"{layout} {n}" for layout, n in sorted(counts.items())))
    print(f"data versions recorded: {len(scan.observations)}")
    for line in scan.rejected:
        print(f"skipped (not a partition): {line}", file=sys.stderr)
    if scan.problem:
        print(f"error: {scan.problem}", file=sys.stderr)
        return 1
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from steering_assets.partitions.personas import PARTITIONS_BY_KIND, sync_partitions

    data_root = _env("PERSONA_DATA_ROOT")
    instance = instance_from_home()
    sync_partitions(instance, data_root)
    keys = instance.get_dynamic_partitions(PARTITIONS_BY_KIND[args.kind].name)
    if args.source_model:
        keys = [k for k in keys if k.startswith(f"{args.source_model}/")]
    if args.partitions:
        wanted = [k.strip() for k in args.partitions.split(",") if k.strip()]
        unknown = sorted(set(wanted) - set(keys))
        if unknown:
            sys.exit(f"unknown {args.kind} partitions: {', '.join(unknown)}")
        keys = wanted
    if not keys:
        sys.exit(f"no {args.kind} partitions to backfill under {data_root}")
    with Launcher(in_process=args.in_process) as launcher:
        failed = backfill_persona_datasets(launcher, args.kind, keys)
        print(f"{len(keys) - failed} of {len(keys)} {args.kind} partitions materialised")
        if args.steering:
            steering_failed = steering_stage(launcher, args.kind, keys)
            print(f"{len(keys) - steering_failed} of {len(keys)} {args.kind} steering vectors trained and evaluated")
            failed += steering_failed
        if args.judged:
            judged_failed = judged_stage(launcher, args.kind, keys)
            print(f"{len(keys) - judged_failed} of {len(keys)} {args.kind} personas judged (trained vs activation vs prompted)")
            print_method_comparison(ArtifactStore(_env("PERSONA_ARTIFACT_ROOT")), data_root)
            failed += judged_failed
    return 1 if failed else 0


def cmd_classifier_dataset(args: argparse.Namespace) -> int:
    """The dataset generator researchers know, over a folder of feature NPZs; same code as the asset."""
    from steering_assets.core.artifacts import atomic_path
    from steering_assets.features.datasets import (
        DatasetSpec,
        DatasetSpecError,
        build_classifier_dataset,
        hidden_state_layer_ids,
        save_dataset,
    )
    from steering_assets.features.layers import LayerSpecError
    from steering_assets.features.prefixes import SentenceFeatures

    folder = Path(args.input)
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not files:
        sys.exit(f"{folder}: no feature NPZs (expected the sentence_features folder of a concept, or the "
                 "sentence_*.npz folder of the original s1 writer)")
    try:
        features = []
        for path in files:
            try:
                feature = SentenceFeatures.load(path)
            except (ValueError, KeyError) as err:
                raise DatasetSpecError(f"{path}: not a feature NPZ ({err})") from None
            hidden_state_layer_ids(feature, where=str(path))  # rows and layer ids agree, named by file
            features.append(feature)
        spec = DatasetSpec(args.strategy, args.layers, args.target_layer, args.target_feature, args.normalize)
        arrays = build_classifier_dataset(features, spec)
    except (DatasetSpecError, LayerSpecError) as err:
        sys.exit(f"error: {err}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        save_dataset(arrays, tmp)
    print(f"{output}: X {arrays['X'].shape}, y {arrays['y'].shape}, strategy {args.strategy}, normalize {args.normalize}")
    return 0
