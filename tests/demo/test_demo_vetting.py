"""The demo's vetting inputs: paired scenarios with known verdicts, and a judge that agrees with them."""

import json

import pytest

from steering_assets.demo.corpus import GENERIC_SENTENCES, TRAIT_VOICES
from steering_assets.demo.vetting import (
    DEMO_VETTING_TRAITS,
    PAIRS_PER_TRAIT,
    held_out_questions,
    judge_agreement,
    rating_examples,
    voice_score,
)
from steering_assets.vetting.judge import JudgmentCache
from steering_assets.vetting.local import LocalJudge, scenario_prompt
from steering_assets.vetting.scenarios import Thresholds, read_trait_scenarios, read_verdicts, response_scores_report


def test_demo_scenarios_are_paired_and_hold_weak_items(demo_workspace):
    truth = json.loads(demo_workspace.scenario_truth.read_text())
    assert sorted(truth) == sorted(f"personality/{t}" for t in DEMO_VETTING_TRAITS)
    for key, expected in truth.items():
        scenarios = read_trait_scenarios(demo_workspace.scenarios_root / key)
        assert len(scenarios.positive) == len(scenarios.negative) == PAIRS_PER_TRAIT
        weak = [item for side in ("positive", "negative") for item in expected[side] if not item["should_pass"]]
        assert len(weak) == 3 and all(item["why"].startswith("weak") for item in weak)
        # The same verdicts, in the verdicts.jsonl format users write, beside the scenarios.
        verdicts = read_verdicts(demo_workspace.scenarios_root / key, scenarios)
        assert [(v.polarity, v.idx, v.should_pass) for v in verdicts] == [
            (side, i, item["should_pass"]) for side in ("positive", "negative") for i, item in enumerate(expected[side])]


def test_judge_never_trains_on_the_demo_questions():
    held_out = set(held_out_questions())
    prompts = [conversation[0]["content"] for conversation in rating_examples(3000, exclude=held_out)]
    assert not any(question in prompt for question in held_out for prompt in prompts)


def test_voice_score_reads_which_voice_wrote_the_text():
    pos, neg = TRAIT_VOICES["humorous"]["pos"], TRAIT_VOICES["humorous"]["neg"]
    in_voice = pos.sentences[0].format(topic="a lost key")
    opposite = neg.sentences[0].format(topic="a lost key")
    assert voice_score("humorous", in_voice) == pytest.approx(95)
    assert voice_score("humorous", opposite) == pytest.approx(5)
    assert voice_score("humorous", GENERIC_SENTENCES[1]) == 50
    assert voice_score("humorous", "") == 50
    assert 40 < voice_score("humorous", f"{in_voice} {opposite}") < 60
    # Another trait's voice is neither the trait nor its opposite.
    assert voice_score("humorous", TRAIT_VOICES["formal"]["pos"].sentences[0].format(topic="x")) == 50


def test_demo_judge_agrees_with_the_known_verdicts(demo_workspace, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(demo_workspace.judge_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(demo_workspace.judge_path)
    judge = LocalJudge(model, tokenizer, "demo-judge", cache=JudgmentCache(tmp_path / "j.jsonl"))
    truth = json.loads(demo_workspace.scenario_truth.read_text())
    reports = {}
    for key in truth:
        scenarios = read_trait_scenarios(demo_workspace.scenarios_root / key)
        items = [(i, side, scenario_prompt(scenarios.definition, item.prompt))
                 for side in ("positive", "negative") for i, item in enumerate(scenarios.side(side))]
        judgments = judge.score([prompt for _, _, prompt in items])
        reports[key] = response_scores_report("scenario_vetting", scenarios,
                                              [(i, side, j) for (i, side, _), j in zip(items, judgments)], Thresholds())
    agreement = judge_agreement(truth, reports)
    assert agreement["total"] == 2 * PAIRS_PER_TRAIT * len(DEMO_VETTING_TRAITS)
    assert agreement["rate"] >= 0.9, agreement["misses"]
    # Every deliberately weak scenario fails.
    for key, expected in truth.items():
        for side in ("positive", "negative"):
            weak = {i for i, item in enumerate(expected[side]) if not item["should_pass"]}
            assert weak <= set(reports[key]["failed_indices"][side]), (key, side)
