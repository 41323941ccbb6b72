import json

import pytest

from steering_assets.formats.rollouts import ROLES, TRAITS, PersonaRef
from steering_assets.personas.dataset import build_persona_dataset
from steering_assets.personas.loading import RolloutFormatError, read_responses, read_scores
from tests.conftest import response_row, write_persona


def test_malformed_line_names_file_and_line(tmp_path):
    path = write_persona(tmp_path, "roles_240", "pirate", [response_row(), response_row(question_index=1), '{"label": "pos",'])
    with pytest.raises(RolloutFormatError, match=rf"{path}:3: malformed JSON"):
        read_responses(path, ROLES)


def test_missing_field_and_wrong_type_name_the_field(tmp_path):
    row = response_row()
    del row["question_index"]
    path = write_persona(tmp_path, "roles_240", "pirate", [response_row(question_index=5), row])
    with pytest.raises(RolloutFormatError, match=r"pirate.jsonl:2: missing field 'question_index'"):
        read_responses(path, ROLES)
    bad = response_row()
    bad["prompt_index"] = "zero"
    path = write_persona(tmp_path, "roles_240", "chef", [bad])
    with pytest.raises(RolloutFormatError, match=r"chef.jsonl:1: field 'prompt_index' should be int, got str"):
        read_responses(path, ROLES)


def test_unknown_label_and_duplicate_rows_are_errors(tmp_path):
    path = write_persona(tmp_path, "roles_240", "pirate", [response_row(label="neg")])
    with pytest.raises(RolloutFormatError, match=r":1: label 'neg' is not one of \['pos', 'default'\]"):
        read_responses(path, ROLES)
    path = write_persona(tmp_path, "roles_240", "chef", [response_row(), response_row()])
    with pytest.raises(RolloutFormatError, match=r":2: duplicate response 'pos_p0_q0' \(first seen on line 1\)"):
        read_responses(path, ROLES)


def test_empty_responses_file_is_an_error(tmp_path):
    path = write_persona(tmp_path, "roles_240", "pirate", [])
    with pytest.raises(RolloutFormatError, match=r"pirate.jsonl: responses file is empty"):
        read_responses(path, ROLES)


def test_missing_score_file_is_an_error_except_for_baselines(tmp_path):
    write_persona(tmp_path, "roles_240", "pirate", [response_row()])
    with pytest.raises(RolloutFormatError, match=r"extract_scores/pirate.json: score file is missing"):
        build_persona_dataset(PersonaRef(ROLES, "model-a", "pirate"), tmp_path)
    write_persona(tmp_path, "roles_240", "0_default", [response_row(system_prompt="")])
    frame, report = build_persona_dataset(PersonaRef(ROLES, "model-a", "0_default"), tmp_path)
    assert frame.height == 1 and frame["score_status"].to_list() == ["missing"]


@pytest.mark.parametrize(
    "kind, value, message",
    [
        (ROLES, 4, r"score 4, outside the role range 0-3"),
        (ROLES, -1, r"score -1, outside the role range 0-3"),
        (TRAITS, 101, r"score 101, outside the trait range 0-100"),
        (TRAITS, "high", r"score 'high'; expected an integer 0-100 or \"REFUSAL\""),
        (ROLES, "REFUSAL", r"score 'REFUSAL'; expected an integer 0-3$"),
        (TRAITS, 72.5, r"score 72.5; expected an integer"),
        (TRAITS, True, r"score True; expected an integer"),
    ],
)
def test_bad_scores_name_file_key_and_expected_range(tmp_path, kind, value, message):
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"pos_p0_q0": 1, "pos_p0_q1": value}))
    with pytest.raises(RolloutFormatError, match=rf"scores.json: key 'pos_p0_q1' has {message}"):
        read_scores(path, kind)


def test_malformed_score_key_and_refusal_for_traits(tmp_path):
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"pos_0_0": 1}))
    with pytest.raises(RolloutFormatError, match=r"key 'pos_0_0' is not of the form"):
        read_scores(path, ROLES)
    path.write_text(json.dumps({"pos_p0_q0": "REFUSAL", "neg_p1_q2": 12.0}))
    assert read_scores(path, TRAITS) == {"pos_p0_q0": "REFUSAL", "neg_p1_q2": 12}


def test_unmatched_scores_and_responses_are_counted_not_fatal(tmp_path):
    rows = [response_row(question_index=i) for i in range(3)]
    write_persona(tmp_path, "roles_240", "pirate", rows, {"pos_p0_q0": 3, "pos_p0_q1": 2, "pos_p5_q9": 3})
    frame, report = build_persona_dataset(PersonaRef(ROLES, "model-a", "pirate"), tmp_path)
    assert report.responses == 3
    assert report.scored == 2
    assert report.responses_without_score == 1
    assert report.scores_without_response == 1
    assert report.orphan_score_examples == ["pos_p5_q9"]
    assert frame["score_status"].to_list() == ["scored", "scored", "missing"]
