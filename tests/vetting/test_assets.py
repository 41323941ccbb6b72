"""Vetting in Dagster against the local OpenAI-compatible server: partitions, reports, checks, caching, schedule."""

import datetime
import json

import dagster as dg

from resources.judge import JudgeResource
from steering_assets.definitions import build_definitions
from steering_assets.vetting.assets import ScenarioSource, revetting_schedule, scenario_discovery_sensor
from tests.vetting.fake_openai import FakeJudgeServer


def write_trait(root, trait, positive, negative):
    folder = root / "social" / trait
    folder.mkdir(parents=True)
    (folder / "definition.txt").write_text(f"Being {trait}.")
    (folder / "positive.txt").write_text("\n".join(positive) + "\n")
    (folder / "negative.txt").write_text("\n".join(negative) + "\n")
    return folder


def test_vetting_job_reports_failures_and_reruns_for_free(demo_workspace, tmp_path):
    root = tmp_path / "scenarios"
    # The fake judge answers around the number after "score:"; one weak positive should fail.
    write_trait(root, "humorous", ["Joke time score:90", "Weak setup score:50"], ["Serious memo score:10", "Dry report score:5"])
    with FakeJudgeServer() as server, dg.instance_for_test() as instance:
        judge = JudgeResource(backend="openai", model="fake-judge", api_key="local-key", base_url=server.base_url, timeout=2)
        defs = build_definitions(str(demo_workspace.data_root), str(tmp_path / "artifacts"), str(demo_workspace.model_path),
                                 scenarios_root=str(root), judge=judge)
        tick = scenario_discovery_sensor(dg.build_sensor_context(instance=instance, resources={"scenarios": ScenarioSource(root=str(root))}))
        instance.add_dynamic_partitions("scenario_traits", list(tick.dynamic_partitions_requests[0].partition_keys))
        assert instance.get_dynamic_partitions("scenario_traits") == ["social/humorous"]
        config = {"ops": {"vetting__scenario_responses": {"config": {"max_new_tokens": 5}}}}
        job = defs.resolve_job_def("vetting")
        result = job.execute_in_process(instance=instance, partition_key="social/humorous", run_config=config, raise_on_error=False)
        assert result.success
        checks = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
        assert not checks["scenario_vetting"].passed  # the weak positive (score ~53) is below 60
        report = json.loads((tmp_path / "artifacts" / "vetting" / "scenario_vetting" / "social" / "humorous" / "response_scores.json").read_text())
        assert report["failed_indices"] == {"positive": [1], "negative": []}
        assert report["summary"]["positive_passed"] == 1 and report["summary"]["negative_passed"] == 2
        calls = server.calls
        again = job.execute_in_process(instance=instance, partition_key="social/humorous", run_config=config)
        assert again.success and server.calls == calls  # nothing changed: zero judge calls

        when = datetime.datetime(2026, 11, 30, 6, tzinfo=datetime.timezone.utc)
        requests = list(revetting_schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when)))
        assert [(r.partition_key, r.run_key) for r in requests] == [("social/humorous", "social/humorous@2026-11-30")]


def test_missing_api_key_stops_before_any_work(demo_workspace, tmp_path):
    root = tmp_path / "scenarios"
    write_trait(root, "humorous", ["a"], ["b"])
    defs = build_definitions(str(demo_workspace.data_root), str(tmp_path / "artifacts"), str(demo_workspace.model_path),
                             scenarios_root=str(root), judge=JudgeResource(backend="openai", api_key=None))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("scenario_traits", ["social/humorous"])
        result = defs.resolve_job_def("vetting").execute_in_process(instance=instance, partition_key="social/humorous", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    message = str(failure.event_specific_data.error.cause or failure.event_specific_data.error)
    assert "no API key is set: export OPENAI_API_KEY" in message
    assert not (tmp_path / "artifacts" / "vetting").exists()
