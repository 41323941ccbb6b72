"""What `make demo`'s persona stages cost launched the old way and through Dagster's backfills.

The old demo path ran one `execute_in_process` per partition (runs without a code-location
origin); the new one submits asset backfills of the code location and drives them in this
process (steering_assets/cli/launch.py), with the persona datasets chunked. Both build the same
artifacts, with the demo's split settings, from the same rollouts into fresh roots on fresh sqlite
instances: what SmolLM2-135M-Instruct said in a `make demo` run (the workspace's, else the run
recorded in tests/fixtures/smollm2_demo), with SmolLM2's tokenizer counting the splits. This
script prints both wall times and the ratio, for the persona datasets of every role (the default
assistant's baseline partition left out, as the demo does) and trait, and for one unpartitioned
asset (the baseline dataset: the fixed cost of one backfill).

    .venv/bin/python benchmarks/demo_launch.py [--workspace .demo]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _settings(workspace: Path, artifacts: Path, home: Path) -> None:
    """The demo's settings (SmolLM2 as persona model and judge) on ``workspace``, artifacts and instance elsewhere."""
    from demo.build import DemoWorkspace

    os.environ.update({
        **DemoWorkspace(workspace).environment(), "DAGSTER_HOME": str(home), "PERSONA_ARTIFACT_ROOT": str(artifacts),
        "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
    })


def _persona_keys(instance, partitions_def) -> list[str]:
    return [k for k in instance.get_dynamic_partitions(partitions_def.name) if not k.endswith("/default")]


def _home(root: Path, name: str) -> Path:
    home = root / name
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    return home


def old_path(root: Path, workspace: Path) -> tuple[float, float]:
    import dagster as dg

    from demo.settings import dataset_run_config
    from steering_assets.definitions import build_definitions, persona_job_name
    from steering_assets.partitions.personas import PARTITIONS_BY_KIND, sync_partitions
    from tests.runner import execute, run_partitions

    home = _home(root, "old")
    _settings(workspace, root / "old-artifacts", home)
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        sync_partitions(instance, workspace / "data")
        started = time.perf_counter()
        for kind_name, partitions_def in PARTITIONS_BY_KIND.items():
            keys = _persona_keys(instance, partitions_def)
            outcomes = run_partitions(defs, instance, persona_job_name(kind_name), keys, run_config=dataset_run_config(kind_name),
                                      progress=lambda _: None)
            assert all(o.success for o in outcomes), [o.error for o in outcomes if not o.success]
        personas = time.perf_counter() - started
        started = time.perf_counter()
        job = defs.resolve_implicit_global_asset_job_def()
        assert execute(job, instance, None, asset_selection=[dg.AssetKey(["roles", "baseline_dataset"])])[1]
        return personas, time.perf_counter() - started


def new_path(root: Path, workspace: Path) -> tuple[float, float]:
    """The persona stage's time includes loading the code location (once per command)."""
    import contextlib
    import io

    from demo.settings import dataset_run_config
    from steering_assets.cli.launcher import Launcher, backfill_persona_datasets, run_assets
    from steering_assets.partitions.personas import PARTITIONS_BY_KIND, sync_partitions

    home = _home(root, "new")
    _settings(workspace, root / "new-artifacts", home)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), Launcher(in_process=True) as launcher:
        load = time.perf_counter() - started  # loading the code location once, paid once per command
        sync_partitions(launcher.instance, workspace / "data")
        started = time.perf_counter() - load
        for kind_name, partitions_def in PARTITIONS_BY_KIND.items():
            keys = _persona_keys(launcher.instance, partitions_def)
            assert backfill_persona_datasets(launcher, kind_name, keys, dataset_run_config(kind_name)) == 0
        personas = time.perf_counter() - started
        started = time.perf_counter()
        assert run_assets(launcher, ["roles", "baseline_dataset"])
        return personas, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=str(REPO / ".demo"), help="a make demo workspace (else the recorded run)")
    args = parser.parse_args()
    from benchmarks._recorded import describe, recorded_root, smollm2_folder

    workspace = recorded_root(args.workspace)
    smollm2_folder()  # converted once per machine: neither side pays it
    with tempfile.TemporaryDirectory(prefix="demo-launch-") as tmp:
        root = Path(tmp)
        # Warm the imports and the tokenizer cache once so neither side pays them.
        from steering_assets import definitions  # noqa: F401

        old = old_path(root, workspace)
        new = new_path(root, workspace)
    print(f"rollouts: {describe(workspace)}")
    print(f"persona datasets, every demo role and trait: old {old[0]:.1f} s, new {new[0]:.1f} s, ratio {old[0] / new[0]:.2f}x")
    print(f"one unpartitioned asset (baseline dataset):  old {old[1]:.1f} s, new {new[1]:.1f} s, ratio {old[1] / new[1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
