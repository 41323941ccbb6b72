"""Command line: discover partitions, backfill persona jobs, build classifier datasets, deployment helpers.

    steering-assets sync-partitions
    steering-assets backfill roles [--source-model M] [--partitions k1,k2] [--steering] [--judged]
    steering-assets classifier-dataset --strategy S --input DIR [--layers L] [--target-layer N --target-feature F] --output OUT
    steering-assets instance check | instance pools --gpu N
    steering-assets local-server postgres|redis start|stop
    steering-assets celery-workers [--gpus N] [--cpu-workers M]

Commands that touch the Dagster instance need DAGSTER_HOME (the Makefile sets it).
Resources come from PERSONA_DATA_ROOT, PERSONA_ARTIFACT_ROOT and PERSONA_MODEL, as in the UI.
The offline demo is not a subcommand: it is a user of the product (``python -m demo``, ``make demo``).
"""

from __future__ import annotations

import argparse

from steering_assets.cli.commands import cmd_backfill, cmd_classifier_dataset, cmd_sync


def main(argv: list[str] | None = None) -> int:
    from steering_assets.core.known_warnings import silence_known_warnings

    silence_known_warnings()
    parser = argparse.ArgumentParser(prog="steering-assets", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("sync-partitions", help="add partitions for every persona under PERSONA_DATA_ROOT")
    sync.set_defaults(func=cmd_sync)
    backfill = sub.add_parser("backfill", help="materialise a persona job for all (or some) partitions")
    backfill.add_argument("kind", choices=["roles", "traits"])
    backfill.add_argument("--source-model", help="only this source model's partitions")
    backfill.add_argument("--partitions", help="comma-separated partition keys (default: all)")
    backfill.add_argument("--steering", action="store_true", help="also train and evaluate steering vectors (needs the model)")
    backfill.add_argument("--judged", action="store_true",
                          help="also the judge-scored comparison: trained vs activation vector vs prompting (needs the judge)")
    backfill.add_argument("--in-process", action="store_true",
                          help="execute the runs in this process instead of through a dagster-daemon (no run queue)")
    backfill.set_defaults(func=cmd_backfill)
    dataset = sub.add_parser("classifier-dataset", help="build one classifier dataset NPZ from feature NPZs")
    dataset.add_argument("--strategy", required=True, choices=["embedding-to-feature", "hidden-to-feature", "hidden-to-concept", "embedding-to-concept"])
    dataset.add_argument("--input", required=True, help="folder of sentence feature NPZs")
    dataset.add_argument("--layers", "--layer", "--input-layer", dest="layers",
                         help="hidden-* strategies: layer ids, e.g. '6' or '0-2,10,15-17' (looked up in the NPZs' "
                              "layer ids; hidden-to-feature defaults to the target layer)")
    dataset.add_argument("--target-layer", type=int, help="*-to-feature strategies: SAE layer id")
    dataset.add_argument("--target-feature", type=int, help="*-to-feature strategies: SAE feature index")
    dataset.add_argument("--normalize", default="standardize", choices=["standardize", "minmax", "none"])
    dataset.add_argument("--output", required=True, help="NPZ to write")
    dataset.set_defaults(func=cmd_classifier_dataset)
    from steering_assets.deployment.commands import add_parsers

    add_parsers(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
