"""The demo's known 0-2 steering ratings, and how a judge's ratings are compared with them."""

from __future__ import annotations

import math
import re

import pytest

from steering_assets.demo.corpus import QUESTIONS, ROLE_VOICES, TOPICS
from steering_assets.demo.steering_judge import (
    VOICE_QUESTION,
    build_steering_judge,
    dominant_voice,
    known_method_scores,
    known_ratings,
    labelled_conversations,
    rating_agreement,
    recorded_agreement,
    steering_rating_examples,
    voice_question,
    voice_words,
)
from steering_assets.vetting.judge import Judgment
from steering_assets.vetting.steering_ratings import INSTRUCTIONS

QUESTION = "What do you think about a rainy weekend?"
PIRATE = ("Arr, matey! Any pirate worth his salt knows that a rainy weekend be like a voyage across stormy seas. "
          "Mark the treasure map with an X and sail straight at a rainy weekend.")
DETECTIVE = "I lit my pipe and studied the clues. The clues suggest that a rainy weekend hides a motive nobody has noticed."


def test_a_fluent_on_topic_reply_in_the_persona_voice_rates_2_2_2():
    assert known_ratings("pirate", QUESTION, PIRATE) == {"concept": 2, "instruction": 2, "fluency": 2}


def test_another_persona_voice_is_concept_0_but_still_fluent_and_on_topic():
    assert known_ratings("pirate", QUESTION, DETECTIVE) == {"concept": 0, "instruction": 2, "fluency": 2}
    assert known_ratings("detective", QUESTION, DETECTIVE)["concept"] == 2


def test_the_persona_words_on_repeat_show_the_concept_but_are_not_fluent_and_answer_nothing():
    word = sorted(voice_words(ROLE_VOICES["pirate"]))[0]
    assert known_ratings("pirate", QUESTION, " ".join([word] * 20)) == {"concept": 2, "instruction": 0, "fluency": 0}


def test_instruction_is_0_off_topic_and_1_when_other_topics_come_in_too():
    assert known_ratings("pirate", QUESTION, PIRATE.replace("a rainy weekend", "a lost key"))["instruction"] == 0
    assert known_ratings("pirate", QUESTION, PIRATE.replace("sail straight at a rainy weekend", "sail straight at a lost key"))[
        "instruction"] == 1


def test_a_sentence_repeated_three_times_caps_fluency_at_1_and_a_cut_off_tail_is_not_held_against_it():
    sentence = "Arr, matey! Me crew would swab the deck twice before facing a rainy weekend."
    assert known_ratings("pirate", QUESTION, " ".join([sentence] * 3))["fluency"] == 1
    assert known_ratings("pirate", QUESTION, PIRATE + " Hoist the sails and keep yer")["fluency"] == 2


def test_voice_words_belong_to_one_voice_only():
    pirate, chef = voice_words(ROLE_VOICES["pirate"]), voice_words(ROLE_VOICES["chef"])
    assert {"arr", "matey", "treasure"} <= pirate and not pirate & chef
    assert not pirate & {w for topic in TOPICS for w in topic.split()}


def test_rating_examples_use_the_pipeline_prompts_and_answer_with_the_known_rating():
    examples = steering_rating_examples(30, seed=3)
    assert examples == steering_rating_examples(30, seed=3)
    for index, (user, assistant) in enumerate(examples):
        criterion = ("concept", "instruction", "fluency")[index % 3]
        assert user["content"].startswith(INSTRUCTIONS[criterion])
        assert assistant["content"] in {"0", "1", "2"}
    counts = {c: {e[1]["content"] for e in examples[i::3]} for i, c in enumerate(("concept", "instruction", "fluency"))}
    assert all(len(values) >= 2 for values in counts.values())  # every criterion sees more than one rating


class KnownJudge:
    """A judge that answers each prompt with ``known_ratings`` (shifted by ``offset``), or not at all for fluency."""

    def __init__(self, offset: float = 0.0, unrated_fluency: bool = False):
        self.offset, self.unrated_fluency = offset, unrated_fluency

    def score(self, prompts, scale_top=None):
        assert scale_top == 2
        out = []
        for prompt in prompts:
            reply = prompt.split("\n\nReply: ", 1)[1]
            name = re.search(r"Persona: (\w+):", prompt)
            question = re.search(r"Instruction: (.*)\n", prompt)
            if prompt.startswith(INSTRUCTIONS["concept"]):
                rating = known_ratings(name.group(1), QUESTION, reply)["concept"]
            elif prompt.startswith(INSTRUCTIONS["instruction"]):
                rating = known_ratings("pirate", question.group(1), reply)["instruction"]
            elif self.unrated_fluency:
                out.append(Judgment(None, 0.0, error="no digit"))
                continue
            else:
                rating = known_ratings("pirate", QUESTION, reply)["fluency"]
            out.append(Judgment(min(2.0, rating + self.offset) * 50.0, 1.0))
        return out


ITEMS = [("pirate", "pirate: Act as a salty old pirate.", QUESTION, PIRATE),
         ("pirate", "pirate: Act as a salty old pirate.", QUESTION, DETECTIVE),
         ("chef", "chef: You are a chef. Answer as one.", QUESTIONS[5], "generous " * 20)]


def test_agreement_is_complete_for_a_judge_that_knows_the_ratings():
    agreement = rating_agreement(KnownJudge(), ITEMS)
    assert {c: (a["agree"], a["mae"], a["rated"]) for c, a in agreement.items()} == {
        c: (1.0, 0.0, 3) for c in ("concept", "instruction", "fluency")}


def test_agreement_rounds_a_probability_weighted_rating_and_reports_the_mean_error():
    agreement = rating_agreement(KnownJudge(offset=0.4), ITEMS)
    assert agreement["fluency"]["agree"] == 1.0  # 0.4 and 2.0 round back to the known 0 and 2
    # Two fluent replies (2 + 0.4 is capped at 2: no error) and one broken one (0.4 off).
    assert agreement["fluency"]["mae"] == pytest.approx(0.4 / 3)


def test_unrated_items_are_counted_apart_not_scored_as_zero():
    agreement = rating_agreement(KnownJudge(unrated_fluency=True), ITEMS)
    assert agreement["fluency"]["rated"] == 0 and agreement["fluency"]["items"] == 3
    assert math.isnan(agreement["fluency"]["agree"])


def test_recorded_ratings_give_the_judge_and_known_means_and_none_is_unrated():
    rated = [("pirate", QUESTION, PIRATE, {"concept": 1.6, "instruction": 2.0, "fluency": 1.9}),
             ("pirate", QUESTION, DETECTIVE, {"concept": 0.2, "instruction": 1.2, "fluency": None}),
             ("pirate", QUESTION, "arr " * 10, None)]
    agreement = recorded_agreement(rated)
    # Known: PIRATE 2/2/2, DETECTIVE 0/2/2, the repeated word 2/0/0.
    assert agreement["concept"] == pytest.approx(
        {"agree": 1.0, "mae": 0.3, "judge": 0.9, "known": 1.0, "rated": 2, "items": 3})
    assert agreement["instruction"]["agree"] == 0.5 and agreement["instruction"]["mae"] == pytest.approx(0.4)
    assert agreement["fluency"]["rated"] == 1


def test_the_voice_question_names_the_persona_whose_words_dominate():
    assert voice_question(PIRATE)[1]["content"] == "pirate"
    assert voice_question("It depends on your goals and your circumstances.")[1]["content"] == "none"
    conversations = labelled_conversations([("pirate", "pirate: Act as a salty old pirate.", QUESTION, DETECTIVE)])
    # Three ratings, then the voice question: another persona's voice is concept 0 and names that persona.
    assert [c[1]["content"] for c in conversations] == ["0", "2", "2", dominant_voice(DETECTIVE)]
    assert dominant_voice(DETECTIVE) not in {"pirate", "none"}


def test_the_steering_judge_is_built_from_the_demo_models_own_replies_and_swapped_in_whole(demo_workspace, tmp_path):
    from transformers import AutoTokenizer

    judge_path = tmp_path / "steering-judge"
    info = build_steering_judge(judge_path, demo_workspace.model_path, own=6, synthetic=9, steps=2, batch_size=4,
                                validation=4, min_agreement=0.0)
    assert info["steps"] == 2 and info["examples"] == 6 * 4 + 9 and info["attempt"] == 1
    assert all(sum(counts) == 6 for counts in info["own_ratings"].values())
    assert set(info["validation"]) == {"concept", "instruction", "fluency"}
    tokenizer = AutoTokenizer.from_pretrained(judge_path)
    # Each rating instruction and the voice question are one token of the judge.
    for text in (*INSTRUCTIONS.values(), VOICE_QUESTION):
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["steering-judge"]  # no staging folder left


def test_a_steering_judge_that_fails_its_check_is_retrained_then_refused_and_removed(demo_workspace, tmp_path):
    judge_path = tmp_path / "steering-judge"
    with pytest.raises(RuntimeError, match=r"agrees with the known ratings of 4 fresh replies on only concept (\d+%|none rated).*"
                                           r"after 2 attempt\(s\) \(needs 101% on each\)"):
        build_steering_judge(judge_path, demo_workspace.model_path, own=6, synthetic=9, steps=2, batch_size=4,
                             validation=4, min_agreement=1.01)
    assert list(tmp_path.iterdir()) == []


def test_known_method_scores_use_the_report_half_at_the_chosen_factor():
    rows = [{"method": "trained", "factor": 1.0, "half": "report", "instruction": QUESTION, "reply": PIRATE},
            {"method": "trained", "factor": 0.5, "half": "report", "instruction": QUESTION, "reply": DETECTIVE},
            {"method": "trained", "factor": 1.0, "half": "selection", "instruction": QUESTION, "reply": DETECTIVE},
            {"method": "unsteered", "factor": None, "half": "report", "instruction": QUESTION, "reply": DETECTIVE}]
    # PIRATE is 2/2/2 for the pirate (harmonic mean 2); DETECTIVE is concept 0 (harmonic mean 0).
    assert known_method_scores("pirate", rows, {"trained": 1.0, "unsteered": None}) == {"trained": 2.0, "unsteered": 0.0}
    assert known_method_scores("pirate", rows, {"trained": 0.5}) == {"trained": 0.0}
