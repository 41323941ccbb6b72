"""The OpenAI-compatible judge against a real local HTTP server, through the real openai client."""

import math
import socket

import pytest

from steering_assets.vetting.judge import (
    JudgeConfigurationError,
    JudgmentCache,
    OpenAIJudge,
    ScoringSettings,
    weighted_score,
)
from tests.vetting.fake_openai import FakeJudgeServer


def judge(server, tmp_path=None, **kwargs):
    cache = JudgmentCache(tmp_path / "judgments.jsonl") if tmp_path else None
    options = {"timeout": 1.0, "max_retries": 2, "concurrency": 8, **kwargs}
    return OpenAIJudge("fake-judge", api_key="sk-test-secret", base_url=server.base_url, cache=cache, **options)


def test_weighted_score_and_the_quarter_rule():
    lp = math.log
    assert weighted_score([("80", lp(0.6)), ("90", lp(0.3)), ("Hi", lp(0.1))]).score == pytest.approx((0.6 * 80 + 0.3 * 90) / 0.9)
    low = weighted_score([("The", lp(0.8)), ("7", lp(0.2))])
    assert low.score is None and low.weight == pytest.approx(0.2)
    assert weighted_score([("101", lp(0.9)), ("5", lp(0.1))], ScoringSettings(min_weight=0.05)).score == pytest.approx(5)
    assert weighted_score([("REFUSAL", lp(0.9)), ("50", lp(0.05))]).refusal


def test_every_wire_case_through_the_real_client(tmp_path):
    prompts = ["score:80", "[text] hello", "[refusal] x", "[429-once] score:30", "[500-once] score:60",
               "[timeout-once] score:10", "[malformed]", "[nologprobs] y"]
    with FakeJudgeServer() as server:
        results = dict(zip(prompts, judge(server, tmp_path).score(prompts)))
    assert results["score:80"].score == pytest.approx((0.6 * 80 + 0.3 * 90) / 0.9)
    assert results["[text] hello"].score is None and results["[text] hello"].error is None
    assert results["[refusal] x"].refusal and results["[refusal] x"].score is None
    assert results["[429-once] score:30"].score == pytest.approx((0.6 * 30 + 0.3 * 40) / 0.9)
    assert results["[500-once] score:60"].ok and results["[timeout-once] score:10"].ok
    assert "malformed" in results["[malformed]"].error.lower() or "APIResponseValidationError" in results["[malformed]"].error
    assert "no logprobs" in results["[nologprobs] y"].error
    assert server.seen["[429-once] score:30"] == 2 and server.seen["[500-once] score:60"] == 2


def test_finished_judgments_survive_and_reruns_make_no_calls(tmp_path):
    prompts = [f"score:{i}" for i in range(20)] + ["[malformed]"]
    with FakeJudgeServer() as server:
        first = judge(server, tmp_path).score(prompts)
        calls_after_first = server.calls
        second_judge = judge(server, tmp_path)
        second = second_judge.score(prompts)
    assert [j.score for j in first[:20]] == [j.score for j in second[:20]]
    # Only the failed item is asked again; nothing finished is lost.
    assert server.calls - calls_after_first == second_judge.calls == 1
    assert len(JudgmentCache(tmp_path / "judgments.jsonl")) == 20


def test_connection_refused_is_recorded_per_item(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = OpenAIJudge("m", api_key="k", base_url=f"http://127.0.0.1:{port}/v1", timeout=0.5, max_retries=1)
    results = refused.score(["score:1", "score:2"])
    assert all(r.error and "APIConnectionError" in r.error for r in results)


def test_missing_api_key_fails_before_any_work_and_keys_are_never_shown():
    with pytest.raises(JudgeConfigurationError, match="no API key"):
        OpenAIJudge("m", api_key="")
    assert "sk-test-secret" not in repr(OpenAIJudge("m", api_key="sk-test-secret"))
