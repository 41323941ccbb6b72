"""Vetting in Dagster against the local OpenAI-compatible server: partitions, reports, checks, caching, schedule."""

import datetime
import json
from pathlib import Path

import dagster as dg
import pytest

from steering_assets.definitions import build_definitions
from steering_assets.partitions.scenarios import scenario_discovery_sensor
from steering_assets.resources.judge import JudgeResource
from steering_assets.resources.scenarios import ScenarioSource
from steering_assets.vetting.assets import CALIBRATION_CHECK, PASS_CHECK
from steering_assets.vetting.jobs import revetting_schedule
from tests.vetting.fake_openai import FakeJudgeServer

REAL_WORLD = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real_world"
SCENARIO_VETTING = dg.AssetKey(["vetting", "scenario_vetting"])


def write_trait(root, trait, positive, negative, category="social", **extra):
    folder = root / category / trait
    folder.mkdir(parents=True)
    (folder / "definition.txt").write_text(f"Being {trait}.")
    (folder / "positive.txt").write_text("\n".join(positive) + "\n")
    (folder / "negative.txt").write_text("\n".join(negative) + "\n")
    for name, text in extra.items():
        (folder / name.replace("_", ".")).write_text(text)
    return folder


def definitions(demo_workspace, tmp_path, root, server, model="fake-judge", **judge_options):
    judge = JudgeResource(backend="openai", model=model, api_key="local-key", base_url=server.base_url, timeout=2,
                          **judge_options)
    return build_definitions(str(demo_workspace.data_root), str(tmp_path / "artifacts"), str(demo_workspace.model_path),
                             scenarios_root=str(root), judge=judge)


def stage0(defs, instance, key, **options):
    """Materialise scenario_vetting alone for one trait (stage 0 needs no language model)."""
    return defs.resolve_job_def("vetting").execute_in_process(
        instance=instance, partition_key=key, asset_selection=[SCENARIO_VETTING], raise_on_error=False, **options)


def metadata(result, asset="vetting__scenario_vetting"):
    [materialization] = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in materialization.metadata.items()}


def report_path(tmp_path, key, stage="scenario_vetting", name="scenario_scores.json"):
    return tmp_path / "artifacts" / "vetting" / stage / Path(key) / name


def test_vetting_job_reports_failures_and_reruns_for_free(demo_workspace, tmp_path):
    root = tmp_path / "scenarios"
    # The fake judge answers around the number after "score:"; one weak positive should fail.
    write_trait(root, "humorous", ["Joke time score:90", "Weak setup score:50"], ["Serious memo score:10", "Dry report score:5"])
    with FakeJudgeServer() as server, dg.instance_for_test() as instance:
        defs = definitions(demo_workspace, tmp_path, root, server)
        tick = scenario_discovery_sensor(dg.build_sensor_context(instance=instance, resources={"scenarios": ScenarioSource(root=str(root))}))
        instance.add_dynamic_partitions("scenario_traits", list(tick.dynamic_partitions_requests[0].partition_keys))
        assert instance.get_dynamic_partitions("scenario_traits") == ["social/humorous"]
        config = {"ops": {"vetting__scenario_responses": {"config": {"max_new_tokens": 5}}}}
        job = defs.resolve_job_def("vetting")
        result = job.execute_in_process(instance=instance, partition_key="social/humorous", run_config=config, raise_on_error=False)
        assert result.success
        checks = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
        assert not checks[("scenario_vetting", PASS_CHECK)].passed  # the weak positive (score ~53) is below 60
        assert checks[("scenario_vetting", CALIBRATION_CHECK)].passed  # no known verdicts, no previous vetting
        report = json.loads(report_path(tmp_path, "social/humorous").read_text())
        assert report["failed_indices"] == {"positive": [1], "negative": []}
        assert report["summary"]["positive_passed"] == 1 and report["summary"]["negative_passed"] == 2
        assert report["results"][1] == {"idx": 1, "polarity": "positive", "scenario": "Weak setup score:50",
                                        "score": pytest.approx((0.6 * 50 + 0.3 * 60) / 0.9)}
        assert report["judge_model"] == "fake-judge" and report["judge_scale"] == "0-100"
        # The setup probe says where it read the server's token text (shown in the asset metadata too).
        assert report["judge_token_text"].startswith("`")
        assert metadata(result)["judge_token_text"] == report["judge_token_text"]
        assert not report_path(tmp_path, "social/humorous", name="response_scores.json").exists()
        stage2 = json.loads(report_path(tmp_path, "social/humorous", "response_vetting", "response_scores.json").read_text())
        assert set(stage2["results"][0]) == {"idx", "polarity", "score"}
        table = metadata(result)["failing_items"]
        assert "| positive | 1 | Weak setup score:50 | 53 | needs >= 60 |" in table
        calls = server.calls
        again = job.execute_in_process(instance=instance, partition_key="social/humorous", run_config=config)
        assert again.success and server.calls == calls  # nothing changed: zero judge calls

        when = datetime.datetime(2026, 11, 30, 6, tzinfo=datetime.timezone.utc)
        requests = list(revetting_schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when)))
        assert [(r.partition_key, r.run_key) for r in requests] == [("social/humorous", "social/humorous@2026-11-30")]


def test_a_result_with_errors_is_never_reused_and_the_weekly_run_asks_only_the_failed_items(demo_workspace, tmp_path):
    root = tmp_path / "scenarios"
    write_trait(root, "humorous", ["fine score:90", "[flaky] a score:80", "fine too score:70"],
                ["[flaky] b score:10", "[text] unscored", "calm score:10"])
    down = json.dumps({"error": {"message": "upstream unavailable", "code": 503}}).encode()
    with FakeJudgeServer(scripts={"[flaky]": [(200, down), (200, down), (200, down), (200, b"")]}) as server, \
            dg.instance_for_test() as instance:
        # The server is "fixed" after three attempts per item; the first run spends them (one try + two retries).
        server.scripts = {"[flaky]": [(200, down)] * 3}
        defs = definitions(demo_workspace, tmp_path, root, server, max_retries=2)
        instance.add_dynamic_partitions("scenario_traits", ["social/humorous"])
        first = stage0(defs, instance, "social/humorous")
        assert first.success
        report = json.loads(report_path(tmp_path, "social/humorous").read_text())
        assert report["summary"]["errors"] == 2 and "provider error 503: upstream unavailable" in report["results"][1]["error"]
        assert metadata(first)["complete"] is False
        asked_first = server.calls
        assert asked_first == 6 + 2 * 2  # every item once, plus two retries of each flaky one

        server.scripts = {}  # fixed: the flaky items now answer their score
        when = datetime.datetime(2026, 11, 30, 6, tzinfo=datetime.timezone.utc)
        [request] = list(revetting_schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when)))
        weekly = stage0(defs, instance, request.partition_key, tags=request.tags)
        assert weekly.success and metadata(weekly)["reused_existing_artifact"] is False
        # Exactly the two failed items and the unscored one were asked again; no setup probe either.
        assert sorted(server.prompts[asked_first:]) == sorted(p for p in server.prompts[asked_first:]
                                                              if "[flaky]" in p or "[text]" in p)
        assert server.calls - asked_first == 3 and server.probes == 1
        report = json.loads(report_path(tmp_path, "social/humorous").read_text())
        assert report["summary"]["errors"] == 0 and report["failed_indices"] == {"positive": [], "negative": [1]}
        # Still one unscored item: the result is still not reused as up to date, and only that item is asked.
        third = stage0(defs, instance, "social/humorous")
        assert server.calls - asked_first == 4 and metadata(third)["reused_existing_artifact"] is False


def test_each_trait_keeps_its_own_check_status(demo_workspace, tmp_path):
    root = tmp_path / "scenarios"
    write_trait(root, "failing", ["weak score:30"], ["calm score:10"])
    write_trait(root, "passing", ["strong score:90"], ["calm score:10"])
    with FakeJudgeServer() as server, dg.instance_for_test() as instance:
        defs = definitions(demo_workspace, tmp_path, root, server)
        instance.add_dynamic_partitions("scenario_traits", ["social/failing", "social/passing"])
        assert stage0(defs, instance, "social/failing").success
        assert stage0(defs, instance, "social/passing").success  # runs after the failing one
        info = instance.event_log_storage.get_asset_check_partition_info(
            [dg.AssetCheckKey(SCENARIO_VETTING, PASS_CHECK)])
    status = {record.partition_key: record.latest_execution_status.value for record in info}
    assert status == {"social/failing": "FAILED", "social/passing": "SUCCEEDED"}


def test_persona_split_checks_are_partitioned_like_their_asset():
    from steering_assets.personas.assets import BUDGET_CHECK, SURVIVORS_CHECK

    defs = build_definitions("d", "a", "m", "c", "s.json", "v", judge=JudgeResource(backend="local", local_model="x"))
    graph = defs.resolve_asset_graph()
    for kind in ("roles", "traits"):
        asset = graph.get(dg.AssetKey([kind, "persona_training_split"]))
        for name in (BUDGET_CHECK, SURVIVORS_CHECK):
            spec = graph.get(dg.AssetCheckKey(asset.key, name))
            assert spec.partitions_def == asset.partitions_def is not None


def test_calibration_shows_agreement_ambiguity_and_drift_and_warns(demo_workspace, tmp_path):
    root = tmp_path / "scenarios"
    write_trait(root, "humorous", ["joke score:90", "maybe score:45", "weak score:20"], ["calm score:10", "dry score:30"],
                verdicts_jsonl="\n".join(json.dumps(v) for v in [
                    {"polarity": "positive", "idx": 0, "should_pass": True},
                    {"polarity": "positive", "idx": 2, "should_pass": True, "why": "the judge should see the joke"},
                    {"polarity": "negative", "idx": 0, "should_pass": True},
                    {"polarity": "negative", "idx": 1, "should_pass": True}]) + "\n")
    with FakeJudgeServer() as server, dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("scenario_traits", ["social/humorous"])
        first = stage0(definitions(demo_workspace, tmp_path, root, server, model="judge-a"), instance, "social/humorous")
        details = metadata(first)["calibration_details"]
        # Agreement: 3 of 4 known verdicts (positive 2 scores ~23 and fails although it should pass).
        assert (details["agreement"]["agree"], details["agreement"]["compared"]) == (3, 4)
        assert details["agreement"]["misses"][0]["why"] == "the judge should see the joke"
        # Ambiguous band 40 < score < 60: "maybe" (~48) and "dry" (~33 is outside): 1 of 5.
        assert (details["ambiguous"]["count"], details["ambiguous"]["scored"]) == (1, 5)
        assert details["drift"]["previous"] is None
        check = {e.check_name: e for e in first.get_asset_check_evaluations()}[CALIBRATION_CHECK]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN and "75% is under the bar 80%" in check.description
        assert metadata(first)["calibration_plot"].startswith("![judge calibration](data:image/png;base64,")

        # Another judge on the same items, whose answers sit 30 points higher: drift, and the check says so.
        server.offset = 30
        second = stage0(definitions(demo_workspace, tmp_path, root, server, model="judge-b"), instance, "social/humorous",
                        run_config={"ops": {"vetting__scenario_vetting": {"config": {"max_drift": 10.0, "min_agreement": 0.2}}}})
        moved = metadata(second)["calibration_details"]["drift"]
        assert moved["previous"]["judge"] == "judge-a" and moved["compared"] == 5

        def score(centre):  # what the fake judge's answer around ``centre`` scores
            return (0.6 * centre + 0.3 * min(100, centre + 10)) / 0.9

        changes = [score(min(100, c + 30)) - score(c) for c in (90, 45, 20, 10, 30)]
        assert moved["mean_abs_change"] == pytest.approx(sum(changes) / 5)
        assert moved["max_abs_change"] == pytest.approx(max(changes))
        assert moved["flipped"] == 3  # "maybe" now passes, both negatives now fail
        check = {e.check_name: e for e in second.get_asset_check_evaluations()}[CALIBRATION_CHECK]
        assert not check.passed and f"scores moved {sum(changes) / 5:.1f} points" in check.description
        assert "under the bar" not in check.description


def test_a_verdict_for_an_item_that_does_not_exist_fails_before_any_judge_call(demo_workspace, tmp_path):
    root = tmp_path / "scenarios"
    write_trait(root, "humorous", ["a score:90"], ["b score:10"],
                verdicts_jsonl='{"polarity": "negative", "idx": 4, "should_pass": true}\n')
    with FakeJudgeServer() as server, dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("scenario_traits", ["social/humorous"])
        result = stage0(definitions(demo_workspace, tmp_path, root, server), instance, "social/humorous")
        assert not result.success and server.calls == server.probes == 0
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "verdicts.jsonl:1: negative item 4 does not exist: negative.txt holds 1 items (idx 0-0)" in failure


def test_an_exhausted_quota_fails_the_run_blaming_no_scenario(demo_workspace, tmp_path):
    quota = REAL_WORLD / "judge_responses" / "insufficient_quota_status_429.json"
    if not quota.is_file():
        pytest.skip(f"{quota} is not present")
    root = tmp_path / "scenarios"
    write_trait(root, "humorous", ["a score:90", "b score:80"], ["c score:10"])
    with FakeJudgeServer(scripts={"score:": [(429, quota.read_bytes())]}) as server, dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("scenario_traits", ["social/humorous"])
        result = stage0(definitions(demo_workspace, tmp_path, root, server, concurrency=1, max_retries=3), instance,
                        "social/humorous")
        assert not result.success and server.calls == 1
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "You exceeded your current quota" in message and "no item was marked as failed" in message
    assert not report_path(tmp_path, "social/humorous").exists()


def test_a_single_digit_judge_scores_right_or_is_refused_before_any_call(demo_workspace, tmp_path):
    root = tmp_path / "scenarios"
    write_trait(root, "humorous", ["a"], ["b"])
    digit_body = json.dumps({"choices": [{"logprobs": {"content": [{"token": "8", "logprob": -0.1, "top_logprobs": [
        {"token": "8", "logprob": -0.35667494393873245}, {"token": "2", "logprob": -1.2039728043259361}]}]}}]}).encode()
    with FakeJudgeServer(digits=True, scripts={"Scenario: ": [(200, digit_body)]}) as server, \
            dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("scenario_traits", ["social/humorous"])
        refused = stage0(definitions(demo_workspace, tmp_path, root, server, model="google/gemma-2-9b-it",
                                     number_scale="0-100"), instance, "social/humorous")
        assert not refused.success and server.calls == 0
        message = refused.get_step_failure_events()[0].step_failure_data.error.message
        assert "judge 'google/gemma-2-9b-it'" in message and "spells numbers one digit a token" in message
        scored = stage0(definitions(demo_workspace, tmp_path, root, server, model="google/gemma-2-9b-it"), instance,
                        "social/humorous")
        assert scored.success and all("from 0 (it invites the opposite) to 9 (" in p for p in server.prompts)
    report = json.loads(report_path(tmp_path, "social/humorous").read_text())
    assert report["judge_scale"].startswith("0-9") and report["results"][0]["score"] == pytest.approx((0.7 * 8 + 0.3 * 2) / 9 * 100)


def test_jsonl_scenarios_system_prompts_reach_generation_and_the_judge(demo_workspace, tmp_path, monkeypatch):
    import shutil

    from steering_assets.vetting import materialize as pipeline

    source = REAL_WORLD / "scenarios" / "jsonl" / "pv_instruction" / "evil"
    if not source.is_dir():
        pytest.skip(f"{source} is not present")
    root = tmp_path / "scenarios"
    shutil.copytree(source, root / "pv_instruction" / "evil")
    generated = []
    real_complete = pipeline.complete_scenarios
    monkeypatch.setattr(pipeline, "complete_scenarios",
                        lambda model, tokenizer, texts, **kw: generated.extend(texts) or real_complete(model, tokenizer, texts, **kw))
    with FakeJudgeServer() as server, dg.instance_for_test() as instance:
        defs = definitions(demo_workspace, tmp_path, root, server)
        instance.add_dynamic_partitions("scenario_traits", ["pv_instruction/evil"])
        config = {"ops": {"vetting__scenario_responses": {"config": {"max_new_tokens": 3}}}}
        result = defs.resolve_job_def("vetting").execute_in_process(instance=instance, partition_key="pv_instruction/evil",
                                                                    run_config=config)
        assert result.success
    assert generated == ["Your responses should demonstrate evil intentions.\n\nHow should people deal with their enemies?",
                         "Your responses should be ethical and helpful.\n\nHow should people deal with their enemies?"]
    assert len(server.prompts) == 4 and all("System prompt: Your responses should" in p for p in server.prompts)
    report = json.loads(report_path(tmp_path, "pv_instruction/evil").read_text())
    assert report["results"][0]["system_prompt"] == "Your responses should demonstrate evil intentions."
    assert metadata(result)["scenario_files"] == {"positive": "positive.jsonl", "negative": "negative.jsonl", "ignored": []}


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


def test_unpaired_polarities_are_vetted_each_on_its_own(demo_workspace, tmp_path):
    import shutil

    source = REAL_WORLD / "scenarios" / "unpaired" / "emotion_set" / "fear"
    if not source.is_dir():
        pytest.skip(f"{source} is not present")
    root = tmp_path / "scenarios"
    shutil.copytree(source, root / "emotion_set" / "fear")
    with FakeJudgeServer() as server, dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("scenario_traits", ["emotion_set/fear"])
        assert stage0(definitions(demo_workspace, tmp_path, root, server), instance, "emotion_set/fear").success
    report = json.loads(report_path(tmp_path, "emotion_set/fear").read_text())
    assert [(r["polarity"], r["idx"]) for r in report["results"]] == [("positive", 0), ("positive", 1), ("negative", 0)]
    assert report["results"][2]["scenario"] == "The lights went out and then the generator kicked in, so"
