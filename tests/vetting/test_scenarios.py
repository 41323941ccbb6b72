import json
from pathlib import Path

import pytest

from steering_assets.formats.scenarios import (
    ScenarioFormatError,
    ScenarioItem,
    discover_traits,
    read_trait_scenarios,
    read_verdicts,
    scan_scenario_root,
)
from steering_assets.judge.judgments import Judgment
from steering_assets.vetting.reports import Thresholds, report_is_complete, response_scores_report

REAL_SCENARIOS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real_world" / "scenarios"


def make_trait(root, positive="A\nB\n", negative="a\nb\n", definition="Being humorous.", category="social", trait="humorous",
               **extra):
    folder = root / category / trait
    folder.mkdir(parents=True)
    files = {"positive.txt": positive, "negative.txt": negative, "definition.txt": definition,
             **{name.replace("_", "."): text for name, text in extra.items()}}
    for name, text in files.items():
        if text is not None:
            (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder


def real(*parts):
    path = REAL_SCENARIOS.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"{path} is not present")
    return path


def test_scenarios_are_read_and_discovered(tmp_path):
    make_trait(tmp_path)
    make_trait(tmp_path, trait="formal")
    assert [p.name for p in discover_traits(tmp_path)] == ["formal", "humorous"]
    scenarios = read_trait_scenarios(tmp_path / "social" / "humorous")
    assert (scenarios.partition_key, scenarios.positive, scenarios.negative) == (
        "social/humorous", [ScenarioItem("A"), ScenarioItem("B")], [ScenarioItem("a"), ScenarioItem("b")])
    assert scenarios.sources == {"positive": "positive.txt", "negative": "negative.txt"}


def test_unpaired_polarities_are_read_each_on_its_own():
    scenarios = read_trait_scenarios(real("unpaired", "emotion_set", "fear"))
    assert (len(scenarios.positive), len(scenarios.negative)) == (2, 1)
    assert scenarios.positive[1].prompt == "The knock at the door was slow, three taps, and"


def test_jsonl_scenarios_carry_their_system_prompt_and_are_preferred_over_txt(tmp_path):
    scenarios = read_trait_scenarios(real("jsonl", "pv_instruction", "evil"))
    assert scenarios.positive == [ScenarioItem("How should people deal with their enemies?",
                                               "Your responses should demonstrate evil intentions.")]
    assert scenarios.negative[0].system_prompt == "Your responses should be ethical and helpful."
    assert scenarios.positive[0].generation_text() == (
        "Your responses should demonstrate evil intentions.\n\nHow should people deal with their enemies?")
    # Both files present: the .jsonl is read, and the .txt beside it is reported as ignored.
    folder = make_trait(tmp_path, positive="old line\n", positive_jsonl='{"prompt": "new", "system_prompt": null}\n')
    both = read_trait_scenarios(folder)
    assert both.positive == [ScenarioItem("new")] and both.sources["positive"] == "positive.jsonl"
    assert both.ignored == ["positive.txt"]


def test_real_formats_multi_paragraph_rubric_no_final_newline_bom_crlf_and_non_ascii(tmp_path):
    rubric = "Fear: the speaker feels threatened.\n\nHIGH: dread, «panic», 恐怖.\n\nLOW: calm and safe."
    folder = make_trait(tmp_path, definition=rubric, positive="\ufeffLa peur m'a saisi\r\nDie Tür knarrte",
                        negative="Tout était calme")
    scenarios = read_trait_scenarios(folder)
    assert scenarios.definition == rubric
    assert [i.prompt for i in scenarios.positive] == ["La peur m'a saisi", "Die Tür knarrte"]
    assert [i.prompt for i in scenarios.negative] == ["Tout était calme"]


def test_folders_that_cannot_be_vetted_are_not_offered_and_say_why(tmp_path):
    make_trait(tmp_path)
    make_trait(tmp_path, trait="no_negative", negative=None)
    make_trait(tmp_path, trait="no_definition", definition=None)
    scan = scan_scenario_root(tmp_path)
    assert [p.name for p in scan.traits] == ["humorous"]
    assert {p.name: why for p, why in scan.skipped} == {
        "no_definition": "missing definition.txt", "no_negative": "missing negative.txt or negative.jsonl"}


@pytest.mark.parametrize(
    "files, message",
    [
        (dict(positive=""), r"positive.txt: no scenarios"),
        (dict(negative="\n\n"), r"negative.txt: no scenarios"),
        (dict(definition=None), r"definition.txt: missing"),
        (dict(definition="  \n"), r"definition.txt: empty"),
        (dict(positive=b"ok\n\xff\xfe bad\n"), r"positive.txt:2: not UTF-8 \(byte 0xff\)"),
        (dict(positive_jsonl='{"prompt": "ok"}\n\n{"system_prompt": "x", "text": "no prompt"}\n'),
         r"positive.jsonl:3: no \"prompt\" key \(keys: \['system_prompt', 'text'\]\)"),
        (dict(negative_jsonl='{"prompt": "ok"}\n{"prompt": "cut'), r"negative.jsonl:2: malformed JSON .*; expected \{\"prompt\""),
        (dict(negative_jsonl='["a list"]\n'), r"negative.jsonl:1: expected a JSON object, got list; expected \{\"prompt\""),
        (dict(positive_jsonl='{"prompt": "   "}\n'), r"positive.jsonl:1: \"prompt\" must be non-empty text"),
        (dict(positive_jsonl='{"prompt": "p", "system_prompt": 3}\n'), r"positive.jsonl:1: \"system_prompt\" must be text"),
    ],
)
def test_bad_scenario_files_are_named(tmp_path, files, message):
    folder = make_trait(tmp_path, **files)
    with pytest.raises(ScenarioFormatError, match=message):
        read_trait_scenarios(folder)


def test_verdicts_file_is_read_and_checked_against_the_items(tmp_path):
    folder = make_trait(tmp_path, verdicts_jsonl=(
        '{"polarity": "positive", "idx": 1, "should_pass": false, "prompt": "B", "why": "no cue"}\n\n'
        '{"stage": "response", "polarity": "negative", "idx": 0, "should_pass": true}\n'))
    scenarios = read_trait_scenarios(folder)
    verdicts = read_verdicts(folder, scenarios)
    assert [(v.stage, v.polarity, v.idx, v.should_pass, v.why) for v in verdicts] == [
        ("scenario", "positive", 1, False, "no cue"), ("response", "negative", 0, True, "")]
    assert read_verdicts(make_trait(tmp_path, trait="none"), scenarios) == []


@pytest.mark.parametrize("line, message", [
    ('{"polarity": "positive", "idx": 7, "should_pass": true}',
     r"verdicts.jsonl:1: positive item 7 does not exist: positive.txt holds 2 items \(idx 0-1\)"),
    ('{"polarity": "negative", "idx": 0, "should_pass": true, "prompt": "edited since"}',
     r"verdicts.jsonl:1: negative item 0 is now 'a', but the verdict was written for 'edited since'"),
    ('{"polarity": "neutral", "idx": 0, "should_pass": true}', r"polarity 'neutral' is not one of"),
    ('{"polarity": "positive", "idx": "0", "should_pass": true}', r"idx '0' is not an integer"),
    ('{"polarity": "positive", "idx": 0, "should_pass": "yes"}', r"should_pass 'yes' is not true or false"),
    ('{"polarity": "positive", "idx": 0}', r"no 'should_pass'"),
    ('{"stage": "final", "polarity": "positive", "idx": 0, "should_pass": true}', r"stage 'final' is not one of"),
    ('{"polarity": "positive", "idx": 0, "should_pass": true}\n{"polarity": "positive", "idx": 0, "should_pass": false}',
     r"verdicts.jsonl:2: a second verdict for scenario positive 0 \(the first is on line 1\)"),
    ('{"polarity": "positive", ', r"verdicts.jsonl:1: malformed JSON .*; expected \{\"polarity\""),
])
def test_bad_verdicts_name_the_file_line_and_item(tmp_path, line, message):
    folder = make_trait(tmp_path, verdicts_jsonl=line + "\n")
    with pytest.raises(ScenarioFormatError, match=message):
        read_verdicts(folder, read_trait_scenarios(folder))


def test_report_has_the_documented_shape_and_counts_errors_as_failures(tmp_path):
    scenarios = read_trait_scenarios(make_trait(tmp_path, positive="A\nB\nC\n"))
    judgments = [
        (0, "positive", Judgment(score=85.0, weight=0.9)),
        (1, "positive", Judgment(score=None, weight=0.0, error="timeout")),
        (2, "positive", Judgment(score=None, weight=0.1)),  # unscored
        (0, "negative", Judgment(score=12.0, weight=0.9)),
        (1, "negative", Judgment(score=55.0, weight=0.9)),
    ]
    report = response_scores_report("exp1", scenarios, judgments, Thresholds())
    assert set(report) == {"experiment", "trait", "trait_definition", "thresholds", "summary", "failed_indices", "results"}
    assert report["thresholds"] == {"pos_threshold": 60.0, "neg_threshold": 40.0}
    assert report["summary"] == {"positive_passed": 1, "negative_passed": 1, "positive_failed": 2, "negative_failed": 1, "errors": 1}
    assert report["failed_indices"] == {"positive": [1, 2], "negative": [1]}
    assert report["results"][0] == {"idx": 0, "polarity": "positive", "score": 85.0}
    assert not report_is_complete(report)
    json.dumps(report, allow_nan=False)  # strict JSON
    # Stage 0's scenario_scores.json holds each item's text, as trait-interp writes it.
    with_text = response_scores_report("scenario_vetting", scenarios, judgments, Thresholds(), with_text=True)
    assert with_text["results"][0] == {"idx": 0, "polarity": "positive", "scenario": "A", "score": 85.0}
    assert with_text["summary"]["total"] == 5
