"""Backfills through Dagster: unique backfill ids, and a wait that notices when no daemon is left to launch the runs."""

import random

import dagster as dg
import pytest

from steering_assets.cli import launch


def test_backfill_ids_differ_after_equal_global_seeds():
    # Training seeds the global random state (transformers.set_seed); the demo submits a
    # backfill after each of two equally seeded trainings, and the ids must still differ.
    instance = dg.DagsterInstance.ephemeral()
    random.seed(42)
    first = launch.new_backfill_id(instance)
    random.seed(42)
    second = launch.new_backfill_id(instance)
    assert first != second
    assert all(len(i) == 8 and i.isalpha() and i.islower() for i in (first, second))


def test_backfill_id_skips_ids_the_instance_holds(monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    held = {"aaaaaaaa"}
    monkeypatch.setattr(instance, "get_backfill", lambda backfill_id: object() if backfill_id in held else None)
    draws = iter("a" * 8 + "b" * 8)

    class Scripted:
        def choice(self, letters):
            return next(draws)

    monkeypatch.setattr(random, "SystemRandom", Scripted)
    assert launch.new_backfill_id(instance) == "bbbbbbbb"


def test_waiting_on_a_backfill_with_no_daemon_left_says_so(monkeypatch):
    monkeypatch.setattr(launch, "DAEMON_SILENCE_S", 0.0)
    with dg.instance_for_test() as instance, launch.workspace_context(instance) as context:
        backfill_id = launch.submit_asset_backfill(instance, context, [dg.AssetKey(["roles", "steering_method_comparison"])], None)
        assert not launch.daemon_is_running(instance)
        with pytest.raises(RuntimeError, match=rf"backfill {backfill_id}: no dagster-daemon has served .* nothing launches"):
            launch.wait_for_backfill(instance, backfill_id, timeout_s=60, poll_s=0.01)
