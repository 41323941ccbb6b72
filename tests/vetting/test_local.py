"""The offline judges on the tiny random model (mechanics only: scales, cache, reuse, the vetting job and its
printout) and base-model completions. Their judging quality on a real model: tests/vetting/test_likelihood_judge.py
and tests/demo/test_demo_vetting.py."""

import json
import math
import re
from types import SimpleNamespace

import pytest
import torch

from steering_assets.judge.judgments import JudgeConfigurationError, JudgmentCache, ScoringSettings, weighted_score
from steering_assets.judge.local import (
    LocalJudge,
    complete_scenarios,
    response_prompt,
    scenario_prompt,
    single_token_numbers,
)


@pytest.fixture(scope="module")
def model(demo_workspace):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(demo_workspace.model_path).eval()


def test_local_judge_scores_from_the_next_token_distribution(model, tokenizer, tmp_path):
    judge = LocalJudge(model, tokenizer, "tiny", cache=JudgmentCache(tmp_path / "j.jsonl"))
    # The demo model's tokenizer spells numbers digit by digit: the judge rates on 0-9.
    assert judge.scale_top() == 9
    prompts = [scenario_prompt("Being humorous.", "A friend trips over a cat.", scale_top=9),
               response_prompt("Being humorous.", "x", "y", scale_top=9)]
    results = judge.score(prompts)
    # The same computation by hand: top-20 next-token logprobs of the chat-formatted prompt.
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompts[0]}], add_generation_prompt=True, tokenize=False)
    with torch.no_grad():
        logits = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, -1]
    top = torch.log_softmax(logits.float(), -1).topk(20)
    expected = weighted_score([(tokenizer.convert_tokens_to_string([t]), v) for t, v in
                               zip(tokenizer.convert_ids_to_tokens(top.indices.tolist()), top.values.tolist())],
                              ScoringSettings(scale_top=9))
    assert results[0].weight == pytest.approx(expected.weight, abs=1e-5)
    assert (results[0].score is None) == (expected.score is None)
    assert judge.calls == 2
    again = LocalJudge(model, tokenizer, "tiny", cache=JudgmentCache(tmp_path / "j.jsonl"))
    again.score(prompts)
    # Only scored judgments were cached: unscored ones are asked again.
    assert again.calls == sum(r.score is None for r in results)


class FixedLogits(torch.nn.Module):
    """A stand-in causal LM whose next-token logits are given (for checking the arithmetic exactly)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("next_logits", torch.as_tensor(logits, dtype=torch.float32))
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.next_logits.expand(input_ids.shape[0], input_ids.shape[1], -1))


def test_a_digit_tokenizer_is_scored_on_0_9_or_refused_and_never_gives_nan(tokenizer):
    vocab = len(tokenizer)
    logits = torch.full((vocab,), -30.0)
    eight, nine = tokenizer.convert_tokens_to_ids("8"), tokenizer.convert_tokens_to_ids("9")
    logits[eight], logits[nine] = math.log(0.6), math.log(0.4)
    judge = LocalJudge(FixedLogits(logits), tokenizer, "digits")
    [result] = judge.score([scenario_prompt("d", "s", scale_top=9)])
    assert result.score == pytest.approx((0.6 * 8 + 0.4 * 9) * 100 / 9, abs=1e-3)
    with pytest.raises(JudgeConfigurationError, match=r"local judge 'digits' does not hold every number 0-100 as one token"):
        LocalJudge(FixedLogits(logits), tokenizer, "digits", number_scale="0-100").scale_top()
    broken = LocalJudge(FixedLogits(torch.full((vocab,), float("nan"))), tokenizer, "broken")
    [nan] = broken.score(["x"])
    assert nan.score is None and "NaN" in nan.error


def test_a_tokenizer_holding_every_whole_number_is_scored_on_0_100(demo_workspace):
    # Tokenizers such as Llama 3's hold each number 0-100 as one token: such a judge answers 0-100, as hosted ones do.
    from transformers import AutoTokenizer

    whole = AutoTokenizer.from_pretrained(demo_workspace.model_path)
    whole.add_tokens([str(n) for n in range(10, 101)])
    assert single_token_numbers(whole, 100) == list(range(101))
    logits = torch.full((len(whole),), -30.0)
    logits[whole.convert_tokens_to_ids("70")], logits[whole.convert_tokens_to_ids("85")] = math.log(0.6), math.log(0.4)
    judge = LocalJudge(FixedLogits(logits), whole, "whole")
    assert judge.scale_top() == 100
    [result] = judge.score([scenario_prompt("d", "s")])
    assert result.score == pytest.approx(0.6 * 70 + 0.4 * 85, abs=1e-3)
    # number_scale="0-9" asks the same judge for one digit; a "70" is then no rating at all.
    digits = LocalJudge(FixedLogits(logits), whole, "whole", number_scale="0-9")
    assert digits.scale_top() == 9
    [unscored] = digits.score([scenario_prompt("d", "s", scale_top=9)])
    assert unscored.score is None and unscored.error is None


def test_completions_are_batched_seeded_and_plain_text(model, tokenizer):
    scenarios = ["Arr, matey! The sea", "Whisk the eggs and", "Case closed, the culprit"]
    greedy = complete_scenarios(model, tokenizer, scenarios, max_new_tokens=6, batch_size=2)
    assert len(greedy) == 3 and greedy == complete_scenarios(model, tokenizer, scenarios, max_new_tokens=6, batch_size=3)
    sampled = complete_scenarios(model, tokenizer, scenarios, max_new_tokens=6, do_sample=True, seed=5)
    assert sampled == complete_scenarios(model, tokenizer, scenarios, max_new_tokens=6, do_sample=True, seed=5)


def test_local_backend_without_a_model_stops_before_any_work(demo_workspace, tmp_path):
    import dagster as dg

    from steering_assets.definitions import build_definitions
    from steering_assets.resources.judge import JudgeResource
    from tests.vetting.test_assets import write_trait

    root = tmp_path / "scenarios"
    write_trait(root, "humorous", ["a"], ["b"])
    defs = build_definitions(str(demo_workspace.data_root), str(tmp_path / "artifacts"), str(demo_workspace.model_path),
                             scenarios_root=str(root), judge=JudgeResource(backend="local"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("scenario_traits", ["social/humorous"])
        result = defs.resolve_job_def("vetting").execute_in_process(instance=instance, partition_key="social/humorous", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    assert "export PERSONA_JUDGE_LOCAL_MODEL" in str(failure.event_specific_data.error.cause or failure.event_specific_data.error)
    assert not (tmp_path / "artifacts" / "vetting").exists()


def test_an_offline_judge_vets_a_demo_trait_and_reuses_everything_unchanged(demo_workspace, tmp_path, capsys):
    # Mechanics of what `make demo` runs (the likelihood backend, the job, its cache, its printout), on the tiny
    # random model: its scores mean nothing. Whether SmolLM2's scores agree with the verdicts: tests/demo/test_demo_vetting.py.
    import shutil

    import dagster as dg

    from steering_assets.definitions import build_definitions
    from steering_assets.formats.scenarios import read_trait_scenarios, read_verdicts
    from steering_assets.resources.judge import JudgeResource

    root = tmp_path / "scenarios"
    shutil.copytree(demo_workspace.scenarios_root, root)
    judge = JudgeResource(backend="likelihood", local_model=str(demo_workspace.model_path))
    defs = build_definitions(str(demo_workspace.data_root), str(tmp_path / "artifacts"), str(demo_workspace.model_path),
                             scenarios_root=str(root), judge=judge)
    job = defs.resolve_job_def("vetting")
    key = "personality/humorous"
    scenarios = read_trait_scenarios(root / key)
    items = len(scenarios.positive) + len(scenarios.negative)
    config = {"ops": {"vetting__scenario_responses": {"config": {"max_new_tokens": 8}}}}
    vetting = tmp_path / "artifacts" / "vetting"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("scenario_traits", [key])
        first = job.execute_in_process(instance=instance, partition_key=key, run_config=config)
        assert first.success
        report = json.loads((vetting / "response_vetting" / key / "response_scores.json").read_text())
        stage0 = json.loads((vetting / "scenario_vetting" / key / "scenario_scores.json").read_text())
        assert report["trait"] == "humorous" and report["judge_scale"] == "0-100"
        assert report["judge_model"].startswith("likelihood-v") and report["judge_method"] == "likelihood ratio"
        assert len(report["results"]) == len(stage0["results"]) == items == 20
        assert all(r["score"] is not None for r in report["results"] + stage0["results"])
        cache = next((vetting / "judgments").glob("judgments-*.jsonl"))
        cached = len(cache.read_text().splitlines())
        assert cached == 2 * items  # every item of both stages judged once and cached
        # The demo's verdicts.jsonl gives the scenario stage its agreement, computed from the report's pass/fail.
        [materialization] = first.asset_materializations_for_node("vetting__scenario_vetting")
        agreement = materialization.metadata["calibration_details"].value["agreement"]
        verdicts = read_verdicts(root / key, scenarios)
        failed = {(side, i) for side in ("positive", "negative") for i in stage0["failed_indices"][side]}
        assert agreement["known"] == agreement["compared"] == len(verdicts) == items
        assert agreement["agree"] == sum(((v.polarity, v.idx) not in failed) == v.should_pass for v in verdicts)
        again = job.execute_in_process(instance=instance, partition_key=key, run_config=config)
        assert again.success
        for node in ("vetting__scenario_responses", "vetting__scenario_vetting", "vetting__response_vetting"):
            assert [m.metadata["reused_existing_artifact"].value for m in again.asset_materializations_for_node(node)] == [True]
        assert len(cache.read_text().splitlines()) == cached

    # What `make demo` prints: pass rates, failing items with the threshold they missed, and the calibration table.
    from steering_assets.cli.reports import print_vetting
    from steering_assets.core.artifacts import ArtifactStore

    capsys.readouterr()
    print_vetting(ArtifactStore(tmp_path / "artifacts"), root, [key])
    out = capsys.readouterr().out
    assert f"Judge calibration ({report['judge_model']})" in out and re.search(r"trait +stage +agreement +ambiguous +drift", out)
    scenario_row = next(line for line in out.splitlines() if line.startswith(f"{key}  scenarios"))
    assert f"{agreement['agree']}/{agreement['compared']} ({agreement['rate']:.0%})" in scenario_row
    for side, i in failed:  # every failing scenario, with the threshold it missed
        assert re.search(rf"{key} +{side[:3]} {i} +\d+ +{re.escape('>= 60' if side == 'positive' else '<= 40')}", out), (side, i)
