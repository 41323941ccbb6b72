import json

import pytest

from steering_assets.vetting.judge import Judgment
from steering_assets.vetting.scenarios import (
    ScenarioFormatError,
    Thresholds,
    discover_traits,
    read_trait_scenarios,
    response_scores_report,
)


def make_trait(root, positive="A\nB\n", negative="a\nb\n", definition="Being humorous.", category="social", trait="humorous"):
    folder = root / category / trait
    folder.mkdir(parents=True)
    for name, text in (("positive.txt", positive), ("negative.txt", negative), ("definition.txt", definition)):
        if text is not None:
            (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder


def test_scenarios_are_read_and_discovered(tmp_path):
    make_trait(tmp_path)
    make_trait(tmp_path, trait="formal")
    assert [p.name for p in discover_traits(tmp_path)] == ["formal", "humorous"]
    scenarios = read_trait_scenarios(tmp_path / "social" / "humorous")
    assert (scenarios.partition_key, scenarios.positive, scenarios.negative) == ("social/humorous", ["A", "B"], ["a", "b"])


@pytest.mark.parametrize(
    "files, message",
    [
        (dict(positive=""), r"positive.txt: no scenarios"),
        (dict(negative="\n\n"), r"negative.txt: no scenarios"),
        (dict(negative="a\n"), r"positive.txt has 2 scenarios and negative.txt 1; they are paired line by line"),
        (dict(definition=None), r"definition.txt: missing"),
        (dict(positive=b"ok\n\xff\xfe bad\n"), r"positive.txt:2: not UTF-8 \(byte 0xff\)"),
    ],
)
def test_bad_scenario_files_are_named(tmp_path, files, message):
    folder = make_trait(tmp_path, **files)
    with pytest.raises(ScenarioFormatError, match=message):
        read_trait_scenarios(folder)


def test_report_has_the_documented_shape_and_counts_errors_as_failures(tmp_path):
    scenarios = read_trait_scenarios(make_trait(tmp_path))
    judgments = [
        (0, "positive", Judgment(score=85.0, weight=0.9)),
        (1, "positive", Judgment(score=None, weight=0.0, error="timeout")),
        (0, "negative", Judgment(score=12.0, weight=0.9)),
        (1, "negative", Judgment(score=55.0, weight=0.9)),
    ]
    report = response_scores_report("exp1", scenarios, judgments, Thresholds())
    assert set(report) == {"experiment", "trait", "trait_definition", "thresholds", "summary", "failed_indices", "results"}
    assert report["thresholds"] == {"pos_threshold": 60.0, "neg_threshold": 40.0}
    assert report["summary"] == {"positive_passed": 1, "negative_passed": 1, "positive_failed": 1, "negative_failed": 1, "errors": 1}
    assert report["failed_indices"] == {"positive": [1], "negative": [1]}
    assert report["results"][0] == {"idx": 0, "polarity": "positive", "score": 85.0}
    json.dumps(report)  # plain JSON
