"""The local judge backend and base-model completions on the demo model."""


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
