"""Backfill ids: unique even when model training has seeded Python's global random state."""

import random

import dagster as dg

from steering_assets import launch


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
