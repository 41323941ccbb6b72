"""The OpenAI-compatible judge against a real local HTTP server, through the real openai client.

Answer bodies come in the layouts real servers send (OpenAI, vLLM, llama.cpp old and new,
Ollama native, legacy completions) and, where ../shared/fixtures/real_world/judge_responses is
present, exactly as captured from real servers, served with their HTTP status.
"""

import json
import math
import socket
from pathlib import Path

import pytest

from steering_assets.judge.judgments import (
    JudgeConfigurationError,
    JudgeStoppedError,
    Judgment,
    JudgmentCache,
    ScoringSettings,
    weighted_score,
)
from steering_assets.judge.logprobs import AnswerError, decode_token, number_value, read_answer
from steering_assets.judge.openai_judge import PROBE_PROMPT, OpenAIJudge, judgment_from_body
from tests.vetting.fake_openai import FakeJudgeServer

JUDGE_RESPONSES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real_world" / "judge_responses"
EXPECTED = (0.6 * 80 + 0.3 * 90) / 0.9  # "80" at 0.6, "90" at 0.3, "Hello" at 0.1


def judge(server, tmp_path=None, **kwargs):
    cache = JudgmentCache(tmp_path / "judgments.jsonl") if tmp_path else None
    options = {"timeout": 1.0, "max_retries": 2, "concurrency": 8, **kwargs}
    return OpenAIJudge(options.pop("model", "fake-judge"), api_key="sk-test-secret", base_url=server.base_url, cache=cache,
                       **options)


def fixture(name):
    path = JUDGE_RESPONSES / name
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    status = int(name.rsplit("_status_", 1)[1].split(".")[0]) if "_status_" in name else 200
    return status, path.read_bytes()


def test_weighted_score_and_the_quarter_rule():
    lp = math.log
    assert weighted_score([("80", lp(0.6)), ("90", lp(0.3)), ("Hi", lp(0.1))]).score == pytest.approx(EXPECTED)
    low = weighted_score([("The", lp(0.8)), ("7", lp(0.2))])
    assert low.score is None and low.weight == pytest.approx(0.2)
    assert weighted_score([("101", lp(0.9)), ("5", lp(0.1))], ScoringSettings(min_weight=0.05)).score == pytest.approx(5)
    assert weighted_score([("REFUSAL", lp(0.9)), ("50", lp(0.05))]).refusal
    assert "Disable thinking" in weighted_score([("<think>", lp(0.9)), ("50", lp(0.05))]).error
    # On the 0-9 scale a digit d counts as d x 100/9, and "10" is not on the scale.
    digits = weighted_score([("8", lp(0.5)), ("9", lp(0.4)), ("10", lp(0.1))], ScoringSettings(scale_top=9))
    assert digits.score == pytest.approx((0.5 * 8 + 0.4 * 9) / 0.9 * 100 / 9)


# --- token text as servers send it -------------------------------------------------------------

@pytest.mark.parametrize("token, number", [
    ("85", 85), (" 85", 85), ("85 ", 85), ("\n85", 85), ("Ġ85", 85), ("▁85", 85), ("Ċ7", 7), ("８５", 85),
    ("٨٥", 85), ("०", 0), ("<0x37>", 7), ("eighty", None), ("8.5", None), ("85%", None), ("", None), ("²", 2),
    ("Ġ", None), ("ĠÃ©", None),
])
def test_number_tokens_are_read_whatever_the_spelling(token, number):
    assert number_value(decode_token(token)) == number


def test_byte_level_tokens_decode_to_their_utf8_text():
    assert decode_token("ĠÃ©tÃ©") == " été"
    assert decode_token("token") == "token"


def chat_body(entries, chosen=None):
    """OpenAI / vLLM / llama.cpp (b4356+) / Ollama /v1 layout."""
    top = [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in entries]
    first = {"token": chosen or entries[0][0], "logprob": entries[0][1], "bytes": None, "top_logprobs": top}
    return {"id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": first["token"]}, "finish_reason": "length",
                         "logprobs": {"content": [first]}}]}


LP = [("80", math.log(0.6)), ("90", math.log(0.3)), ("Hello", math.log(0.1))]
LAYOUTS = {
    "chat": chat_body(LP),
    "chat, leading spaces and no bytes": {"choices": [{"message": {"content": " 80"}, "logprobs": {"content": [
        {"token": " 80", "logprob": LP[0][1], "top_logprobs": [{"token": " " + t, "logprob": v} for t, v in LP]}]}}]},
    "chat, byte-level BPE markers": {"choices": [{"logprobs": {"content": [
        {"token": "Ġ80", "logprob": LP[0][1], "top_logprobs": [{"token": "Ġ" + t, "logprob": v} for t, v in LP]}]}}]},
    "chat, SentencePiece markers": {"choices": [{"logprobs": {"content": [
        {"token": "▁80", "logprob": LP[0][1], "top_logprobs": [{"token": "▁" + t, "logprob": v} for t, v in LP]}]}}]},
    "chat, full-width numerals": {"choices": [{"logprobs": {"content": [
        {"token": "８０", "logprob": LP[0][1], "top_logprobs": [{"token": "８０", "logprob": LP[0][1]},
                                                               {"token": "９０", "logprob": LP[1][1]},
                                                               {"token": "Hello", "logprob": LP[2][1]}]}]}}]},
    "llama.cpp b4356+ (ids)": {"choices": [{"logprobs": {"content": [
        {"id": 1, "token": "80", "logprob": LP[0][1], "bytes": [56, 48],
         "top_logprobs": [{"id": i, "token": t, "logprob": v, "bytes": list(t.encode())} for i, (t, v) in enumerate(LP)]}]}}]},
    "legacy completions": {"choices": [{"text": "80", "logprobs": {
        "tokens": ["80"], "token_logprobs": [LP[0][1]], "top_logprobs": [dict(LP)], "text_offset": [0]}}]},
    "llama.cpp before Dec 2024 (probs)": {"content": "80", "completion_probabilities": [
        {"content": "80", "probs": [{"tok_str": t, "prob": math.exp(v)} for t, v in LP]}]},
    "llama.cpp post-sampling probs": {"content": "80", "completion_probabilities": [
        {"id": 1, "token": "80", "prob": 0.6, "top_probs": [{"id": 1, "token": t, "prob": math.exp(v)} for t, v in LP]}]},
    "llama.cpp native logprobs": {"content": "80", "completion_probabilities": [
        {"id": 1, "token": "80", "logprob": LP[0][1], "top_logprobs": [{"id": 1, "token": t, "logprob": v} for t, v in LP]}]},
    "ollama native": {"model": "m", "message": {"role": "assistant", "content": "80"}, "done": True, "logprobs": [
        {"token": "80", "logprob": LP[0][1], "bytes": [56, 48], "top_logprobs": [{"token": t, "logprob": v} for t, v in LP]}]},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_servers_send_gives_the_same_score(layout):
    judgment = judgment_from_body(LAYOUTS[layout], ScoringSettings())
    assert judgment.error is None and judgment.score == pytest.approx(EXPECTED), layout


@pytest.mark.parametrize("value, message", [
    (float("nan"), "is NaN"), (None, "is null"), (float("inf"), "above 0"), (0.5, "above 0"), ("-0.1", "is not a number"),
])
def test_a_value_that_is_not_a_logprob_is_that_items_error(value, message):
    body = chat_body([("80", math.log(0.6)), ("70", value), ("90", math.log(0.3))])
    judgment = judgment_from_body(body, ScoringSettings())
    assert judgment.score is None and message in judgment.error and "'70'" in judgment.error


def test_minus_infinity_is_a_token_the_judge_never_picks():
    body = chat_body([("80", math.log(0.6)), ("70", float("-inf")), ("90", math.log(0.3))])
    assert judgment_from_body(body, ScoringSettings()).score == pytest.approx((0.6 * 80 + 0.3 * 90) / 0.9)


def test_token_ids_without_text_and_thinking_tokens_are_named():
    ids = {"choices": [{"logprobs": {"content": [{"token": "token_id:23", "logprob": -0.1,
                                                   "top_logprobs": [{"token": "token_id:23", "logprob": -0.1}]}]}}]}
    assert "return_tokens_as_token_ids" in judgment_from_body(ids, ScoringSettings()).error
    think = chat_body([("<think>", -0.01), ("85", -5.0)])
    assert "Disable thinking" in judgment_from_body(think, ScoringSettings()).error
    with pytest.raises(AnswerError) as caught:
        read_answer({"choices": [{"message": {"content": None, "reasoning_content": "Let me see"}, "logprobs": None}]})
    assert caught.value.kind == "reasoning"


def test_judgments_never_hold_nan_and_the_cache_is_strict_json(tmp_path):
    with pytest.raises(ValueError, match="finite number in 0-100"):
        Judgment(score=float("nan"), weight=1.0)
    with pytest.raises(ValueError):
        Judgment(score=101.0, weight=1.0)
    # A cache written by an older version may hold NaN scores or unscored rows: they are dropped, not served.
    path = tmp_path / "judgments.jsonl"
    path.write_text('{"key": "a", "judgment": {"score": NaN, "weight": 1.0}}\n'
                    '{"key": "b", "judgment": {"score": null, "weight": 0.1}}\n'
                    '{"key": "c", "judgment": {"score": 42.0, "weight": 0.9}}\n{"key": "d", "judg')
    cache = JudgmentCache(path)
    assert (len(cache), cache.dropped, cache.get("c").score) == (1, 3, 42.0)
    cache.put("e", Judgment(score=None, weight=0.0, error="boom"))
    cache.put("f", Judgment(score=None, weight=0.1))  # unscored
    assert len(JudgmentCache(path)) == 1


# --- through the real client ------------------------------------------------------------------

def test_every_wire_case_through_the_real_client(tmp_path):
    prompts = ["score:80", "[text] hello", "[refusal] x", "[429-once] score:30", "[500-once] score:60",
               "[timeout-once] score:10", "[malformed]", "[nologprobs] y"]
    with FakeJudgeServer() as server:
        scorer = judge(server, tmp_path)
        results = dict(zip(prompts, scorer.score(prompts)))
    assert scorer.probe.kind == "whole" and server.probes == 1
    assert results["score:80"].score == pytest.approx((0.6 * 80 + 0.3 * 90) / 0.9)
    assert results["[text] hello"].score is None and results["[text] hello"].error is None
    assert results["[refusal] x"].refusal and results["[refusal] x"].score is None
    assert results["[429-once] score:30"].score == pytest.approx((0.6 * 30 + 0.3 * 40) / 0.9)
    assert results["[500-once] score:60"].ok and results["[timeout-once] score:10"].ok
    assert "malformed" in results["[malformed]"].error.lower()
    assert "no logprobs" in results["[nologprobs] y"].error
    assert server.seen["[429-once] score:30"] == 2 and server.seen["[500-once] score:60"] == 2


def test_finished_judgments_survive_and_reruns_ask_only_failed_and_unscored_items(tmp_path):
    prompts = [f"score:{i}" for i in range(20)] + ["[malformed]", "[text] unscored"]
    with FakeJudgeServer() as server:
        first = judge(server, tmp_path).score(prompts)
        calls_after_first = server.calls
        second_judge = judge(server, tmp_path)
        second = second_judge.score(prompts)
    assert [j.score for j in first[:20]] == [j.score for j in second[:20]]
    # Only the failed and the unscored item are asked again; nothing finished is lost, the probe is cached.
    assert server.calls - calls_after_first == second_judge.calls == 2
    assert (server.probes, second_judge.probe_calls) == (1, 0)
    assert len(JudgmentCache(tmp_path / "judgments.jsonl")) == 20


def test_a_refused_connection_stops_the_judge_at_setup_naming_the_server(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(JudgeConfigurationError, match=f"setup probe of the judge 'm' at {url} failed: APIConnectionError"):
        OpenAIJudge("m", api_key="k", base_url=url, timeout=0.5, max_retries=1).score(["score:1"])
    # With the scale given there is no probe: each item records its own connection error.
    results = OpenAIJudge("m", api_key="k", base_url=url, timeout=0.5, max_retries=1, number_scale="0-9").score(["a", "b"])
    assert all(r.error and "APIConnectionError" in r.error for r in results)


def test_a_setup_probe_that_times_out_is_a_clear_error_and_nothing_is_judged(tmp_path):
    with FakeJudgeServer(probe_delay=1.5) as server:
        with pytest.raises(JudgeConfigurationError, match=r"setup probe .* timed out after 0.5s and 1 retries: check that "
                                                          r"the server is up"):
            judge(server, tmp_path, timeout=0.5, max_retries=1).score(["score:50"])
        assert server.calls == 0


def test_missing_api_key_fails_before_any_work_and_keys_are_never_shown():
    with pytest.raises(JudgeConfigurationError, match="no API key"):
        OpenAIJudge("m", api_key="")
    assert "sk-test-secret" not in repr(OpenAIJudge("m", api_key="sk-test-secret"))


# --- the real servers' answer bodies (shared fixtures) ------------------------------------------

def test_single_digit_judge_scores_the_whole_number_on_a_one_token_scale(tmp_path):
    status, body = fixture("single_digit_tokens.json")
    with FakeJudgeServer(digits=True, scripts={"score me": [(status, body)]}) as server:
        scorer = judge(server, tmp_path, model="Qwen/Qwen2.5-7B-Instruct")
        assert scorer.scale_top() == 9 and scorer.probe.tokens[:2] == ["8", "5"]
        [result] = scorer.score(["score me"])
    tops = json.loads(body)["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    weights = [(int(t["token"]), math.exp(t["logprob"])) for t in tops]
    expected = sum(d * p for d, p in weights) / sum(p for _, p in weights) * 100 / 9
    assert result.score == pytest.approx(expected) and result.score > 80  # never "about 8"


def test_single_digit_judge_is_refused_before_any_call_when_0_100_is_demanded(tmp_path):
    status, body = fixture("single_digit_tokens.json")
    with FakeJudgeServer(digits=True, scripts={"score me": [(status, body)]}) as server:
        scorer = judge(server, tmp_path, model="Qwen/Qwen2.5-7B-Instruct", number_scale="0-100")
        with pytest.raises(JudgeConfigurationError, match=r"judge 'Qwen/Qwen2.5-7B-Instruct' .* spells numbers one digit a "
                                                          r"token \(it answered 85 as \['8', '5'\]\)"):
            scorer.score(["score me"] * 3)
        assert server.calls == 0


@pytest.mark.parametrize("name, message", [("nan_logprob.json", "is NaN"), ("null_logprob.json", "is null")])
def test_nan_and_null_logprobs_are_the_items_error_never_cached(tmp_path, name, message):
    status, body = fixture(name)
    with FakeJudgeServer(scripts={"score me": [(status, body)]}) as server:
        [result] = judge(server, tmp_path).score(["score me"])
    assert result.score is None and message in result.error and "'70'" in result.error
    assert len(JudgmentCache(tmp_path / "judgments.jsonl")) == 0
    json.dumps({"score": result.score, "error": result.error}, allow_nan=False)


def test_a_reasoning_judge_is_an_error_naming_the_fix(tmp_path):
    status, body = fixture("reasoning_first_token.json")
    with FakeJudgeServer(scripts={"score me": [(status, body)]}) as server:
        [result] = judge(server, tmp_path).score(["score me"])
    assert result.score is None and "reasoning model" in result.error and "Disable thinking" in result.error
    # A reasoning model answers the setup probe the same way: it is refused before any item.
    with FakeJudgeServer(scripts={PROBE_PROMPT: [(status, body)]}) as server:
        with pytest.raises(JudgeConfigurationError, match="Disable thinking"):
            judge(server).score(["score:50"])
        assert server.calls == 0


@pytest.mark.parametrize("name, message, code", [
    ("error_in_body_status_200.json", "Provider returned error: upstream rate limit exceeded", "429"),
    ("error_in_choice_status_200.json", "Upstream provider error", "502"),
])
def test_provider_errors_in_a_200_body_are_retried_then_named(tmp_path, name, message, code):
    status, body = fixture(name)
    with FakeJudgeServer(scripts={"score me": [(status, body)]}) as server:
        [result] = judge(server, tmp_path, max_retries=2).score(["score me"])
        assert server.seen["score me"] == 3  # retried like the HTTP status the code names
    assert result.score is None and message in result.error and f"provider error {code}" in result.error
    # Fixed on the second attempt: the client's retry succeeds and the item is scored.
    ok = json.dumps(chat_body(LP)).encode()
    with FakeJudgeServer(scripts={"score me": [(status, body), (200, ok)]}) as server:
        [result] = judge(server, max_retries=2).score(["score me"])
    assert result.score == pytest.approx(EXPECTED) and server.seen["score me"] == 2


def test_insufficient_quota_stops_the_run_at_once_without_retries_or_blame(tmp_path):
    status, body = fixture("insufficient_quota_status_429.json")
    prompts = [f"quota item {i}" for i in range(6)]
    with FakeJudgeServer(scripts={"quota item": [(status, body)]}) as server:
        with pytest.raises(JudgeStoppedError) as caught:
            judge(server, tmp_path, max_retries=3, concurrency=1).score(prompts)
        assert server.calls == 1  # no retry, and no further item asked
    message = str(caught.value)
    assert "You exceeded your current quota" in message and "insufficient_quota" in message
    assert "no item was marked as failed" in message and "quota item" not in message
    assert len(JudgmentCache(tmp_path / "judgments.jsonl")) == 0
