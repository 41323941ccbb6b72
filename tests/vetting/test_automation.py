"""Re-vetting that really happens: a real dagster-daemon re-vets exactly the trait whose scenario file was edited.

The daemon runs as a subprocess with a fresh DAGSTER_HOME and the code location's own sensors:
``scenario_discovery_sensor`` observes the edit as a new data version of ``vetting/scenario_files``
and the ``default_automation_condition_sensor`` (running by default) launches the eager re-vet.
Both sensors tick every second here (PERSONA_SCENARIO_SCAN_SECONDS, PERSONA_AUTOMATION_SECONDS).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.vetting.fake_openai import FakeJudgeServer
from tests.vetting.test_assets import write_trait

REPO = Path(__file__).resolve().parents[2]
SCENARIO_VETTING = dg.AssetKey(["vetting", "scenario_vetting"])
DEADLINE_S = 240


def _wait(what, condition, deadline, daemon):
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if daemon.poll() is not None:
            pytest.fail(f"dagster-daemon exited ({daemon.returncode}) while waiting for {what}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def _automation_ticks(instance):
    for state in instance.all_instigator_state():
        if state.instigator_name == "default_automation_condition_sensor":
            return instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5)
    return []


def test_editing_a_scenario_file_under_a_running_daemon_re_vets_that_trait_alone(demo_workspace, tmp_path):
    root = tmp_path / "scenarios"
    edited = write_trait(root, "edited", ["joke score:90"], ["calm score:10"])
    write_trait(root, "untouched", ["joke score:90"], ["calm score:10"])
    home, artifacts = tmp_path / "home", tmp_path / "artifacts"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with FakeJudgeServer() as server:
        (tmp_path / "location.py").write_text(
            "from steering_assets.resources.judge import JudgeResource\n"
            "from steering_assets.definitions import build_definitions\n"
            f"defs = build_definitions({str(demo_workspace.data_root)!r}, {str(artifacts)!r}, "
            f"{str(demo_workspace.model_path)!r}, scenarios_root={str(root)!r}, judge=JudgeResource(backend='openai', "
            f"model='fake-judge', api_key='local', base_url={server.base_url!r}, timeout=10))\n")
        (tmp_path / "workspace.yaml").write_text(
            f"load_from:\n  - python_file:\n      relative_path: {tmp_path / 'location.py'}\n"
            f"      working_directory: {REPO}\n      location_name: steering_assets\n")
        env = {**os.environ, "DAGSTER_HOME": str(home), "PERSONA_SCENARIO_SCAN_SECONDS": "1",
               "PERSONA_AUTOMATION_SECONDS": "1", "PYTHONPATH": str(REPO)}
        os.environ["DAGSTER_HOME"] = str(home)
        try:
            instance = dg.DagsterInstance.get()
        finally:
            del os.environ["DAGSTER_HOME"]
        with instance:
            # Both traits vetted once already (in this process), and their files observed: nothing is missing
            # or new when the daemon starts, so its first ticks have nothing to do.
            sys.path.insert(0, str(tmp_path))
            try:
                from location import defs  # noqa: PLC0415
            finally:
                sys.path.remove(str(tmp_path))
            from steering_assets.formats.scenarios import scenario_files_digest
            from steering_assets.partitions.scenarios import SCENARIO_FILES_KEY

            keys = ["social/edited", "social/untouched"]
            instance.add_dynamic_partitions("scenario_traits", keys)
            config = {"ops": {"vetting__scenario_responses": {"config": {"max_new_tokens": 2}}}}
            for key in keys:
                folder = root / key
                instance.report_runless_asset_event(dg.AssetObservation(
                    SCENARIO_FILES_KEY, partition=key, tags={"dagster/data_version": scenario_files_digest(folder)[:32]}))
                assert defs.resolve_job_def("vetting").execute_in_process(instance=instance, partition_key=key,
                                                                          run_config=config).success
            runs_before = {run.run_id for run in instance.get_runs()}
            daemon = subprocess.Popen([str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w",
                                      str(tmp_path / "workspace.yaml")], cwd=tmp_path, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + DEADLINE_S
            try:
                # Edit only after the automation sensor has evaluated once (its first tick sets the baseline).
                _wait("the automation sensor's first tick", lambda: any(t.status.value != "STARTED" for t in
                                                                         _automation_ticks(instance)), deadline, daemon)
                (edited / "positive.txt").write_text("joke score:90\nanother joke score:85\n")

                def revetted():
                    runs = [r for r in instance.get_runs() if r.run_id not in runs_before]
                    return runs if runs and all(r.is_finished for r in runs) else None

                runs = _wait("the re-vetting run", revetted, deadline, daemon)
            finally:
                daemon.send_signal(signal.SIGINT)
                try:
                    output = daemon.communicate(timeout=30)[0].decode(errors="replace")
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    output = daemon.communicate()[0].decode(errors="replace")
            assert {r.tags.get("dagster/partition") for r in runs} == {"social/edited"}, output[-3000:]
            assert all(r.is_success for r in runs), output[-3000:]
            latest = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=SCENARIO_VETTING, asset_partitions=["social/edited"]), limit=1).records[0]
            assert latest.run_id in {r.run_id for r in runs}
            report = (artifacts / "vetting" / "scenario_vetting" / "social" / "edited" / "scenario_scores.json").read_text()
            assert "another joke" in report
