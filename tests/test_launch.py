"""Backfills through Dagster: a wait that notices when no daemon is left to launch the runs."""

import dagster as dg
import pytest

from steering_assets import launch


def test_waiting_on_a_backfill_with_no_daemon_left_says_so(monkeypatch):
    monkeypatch.setattr(launch, "DAEMON_SILENCE_S", 0.0)
    with dg.instance_for_test() as instance, launch.workspace_context(instance) as context:
        backfill_id = launch.submit_asset_backfill(instance, context, [dg.AssetKey(["roles", "steering_method_comparison"])], None)
        assert not launch.daemon_is_running(instance)
        with pytest.raises(RuntimeError, match=rf"backfill {backfill_id}: no dagster-daemon has served .* nothing launches"):
            launch.wait_for_backfill(instance, backfill_id, timeout_s=60, poll_s=0.01)
