"""The local judge backend and base-model completions on the demo model."""


import json

import pytest
import torch

from steering_assets.vetting.judge import JudgmentCache, weighted_score
from steering_assets.vetting.local import LocalJudge, complete_scenarios, response_prompt, scenario_prompt


@pytest.fixture(scope="module")
def model(demo_workspace):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(demo_workspace.model_path).eval()


def test_local_judge_scores_from_the_next_token_distribution(model, tokenizer, tmp_path):
    judge = LocalJudge(model, tokenizer, "tiny", cache=JudgmentCache(tmp_path / "j.jsonl"))
    prompts = [scenario_prompt("Being humorous.", "A friend trips over a cat."), response_prompt("Being humorous.", "x", "y")]
    results = judge.score(prompts)
    # The same computation by hand: top-20 next-token logprobs of the chat-formatted prompt.
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompts[0]}], add_generation_prompt=True, tokenize=False)
    with torch.no_grad():
        logits = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, -1]
    top = torch.log_softmax(logits.float(), -1).topk(20)
    expected = weighted_score([(tokenizer.convert_tokens_to_string([t]), v) for t, v in
                               zip(tokenizer.convert_ids_to_tokens(top.indices.tolist()), top.values.tolist())])
    assert results[0].weight == pytest.approx(expected.weight, abs=1e-5)
    assert (results[0].score is None) == (expected.score is None)
    assert judge.calls == 2
    again = LocalJudge(model, tokenizer, "tiny", cache=JudgmentCache(tmp_path / "j.jsonl"))
    again.score(prompts)
    assert again.calls == 0


def test_completions_are_batched_seeded_and_plain_text(model, tokenizer):
    scenarios = ["Arr, matey! The sea", "Whisk the eggs and", "Case closed, the culprit"]
    greedy = complete_scenarios(model, tokenizer, scenarios, max_new_tokens=6, batch_size=2)
    assert len(greedy) == 3 and greedy == complete_scenarios(model, tokenizer, scenarios, max_new_tokens=6, batch_size=3)
    sampled = complete_scenarios(model, tokenizer, scenarios, max_new_tokens=6, do_sample=True, seed=5)
    assert sampled == complete_scenarios(model, tokenizer, scenarios, max_new_tokens=6, do_sample=True, seed=5)


def test_local_backend_without_a_model_stops_before_any_work(demo_workspace, tmp_path):
    import dagster as dg

    from resources.judge import JudgeResource
    from steering_assets.definitions import build_definitions
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


def test_local_judge_vets_a_demo_trait_and_reuses_everything_unchanged(demo_workspace, tmp_path):
    import shutil

    import dagster as dg

    from resources.judge import JudgeResource
    from steering_assets.definitions import build_definitions

    root = tmp_path / "scenarios"
    shutil.copytree(demo_workspace.scenarios_root, root)
    judge = JudgeResource(backend="local", local_model=str(demo_workspace.judge_path))
    defs = build_definitions(str(demo_workspace.data_root), str(tmp_path / "artifacts"), str(demo_workspace.model_path),
                             scenarios_root=str(root), judge=judge)
    job = defs.resolve_job_def("vetting")
    key = "personality/humorous"
    config = {"ops": {"vetting__scenario_responses": {"config": {"max_new_tokens": 8}}}}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("scenario_traits", [key])
        first = job.execute_in_process(instance=instance, partition_key=key, run_config=config)
        assert first.success
        report_path = tmp_path / "artifacts" / "vetting" / "response_vetting" / "personality" / "humorous" / "response_scores.json"
        report = json.loads(report_path.read_text())
        assert report["trait"] == "humorous" and len(report["results"]) == 32
        cache = next((tmp_path / "artifacts" / "vetting" / "judgments").glob("judgments-*.jsonl"))
        cached = len(cache.read_text().splitlines())
        assert cached == 64  # 32 scenarios and 32 completions, each judged once
        again = job.execute_in_process(instance=instance, partition_key=key, run_config=config)
        assert again.success
        reused = [m.metadata["reused_existing_artifact"].value for m in again.asset_materializations_for_node("vetting__response_vetting")]
        assert reused == [True] and len(cache.read_text().splitlines()) == cached
