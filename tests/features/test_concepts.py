import json
from pathlib import Path

import dagster as dg
import pytest

from steering_assets.formats.concepts import (
    ConceptFileError,
    concept_source,
    discover_concepts,
    read_concept_sentences,
    survey_concepts,
)
from steering_assets.partitions.concepts import concept_discovery_sensor, sync_concept_partitions
from steering_assets.resources.concepts import ConceptSentences


@pytest.mark.parametrize(
    "row, message",
    [
        ({"sentence": "Fine.", "concept_strength_label": 4}, r"concepts.jsonl:2: concept_strength_label 4 is outside 0-3"),
        ({"sentence": "Fine.", "concept_strength_label": -1}, r":2: concept_strength_label -1 is outside 0-3"),
        ({"sentence": "", "concept_strength_label": 1}, r":2: 'sentence' should be a non-empty string"),
        ({"sentence": "Fine."}, r":2: concept_strength_label None is outside 0-3"),
    ],
)
def test_bad_concept_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "concepts.jsonl"
    path.write_text(json.dumps({"sentence": "Good.", "concept_strength_label": 0}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ConceptFileError, match=message):
        read_concept_sentences(path)


# -- the interpretability pipeline's CSV files and what else a concepts root holds ----------------

TRACING_CSV = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real_world" / "concepts" / "tracing_csv"


def test_tracing_csv_fixture_is_a_concept_partition(tmp_path):
    if not TRACING_CSV.is_dir():
        pytest.skip(f"{TRACING_CSV} is not present")
    assert discover_concepts(TRACING_CSV) == ["dishonesty"]
    sentences = read_concept_sentences(concept_source(TRACING_CSV, "dishonesty"))
    # CRLF line ends and a quoted comma, as Python's csv.writer writes them.
    assert [(s.sentence, s.label) for s in sentences] == [("I scammed the clients", 3), ("I went to the store, then home.", 0)]
    with dg.instance_for_test() as instance:
        assert sync_concept_partitions(instance, TRACING_CSV) == ["dishonesty"]
        assert instance.get_dynamic_partitions("concepts") == ["dishonesty"]


def test_csv_written_by_the_csv_module_round_trips(tmp_path):
    import csv

    rows = [("She said, \"no\", twice.", 2), ("Line one\nline two", 1), ("Plain", 0)]
    with open(tmp_path / "brave.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "concept_strength_label"])
        writer.writerows(rows)
    assert [(s.sentence, s.label) for s in read_concept_sentences(tmp_path / "brave.csv")] == rows


@pytest.mark.parametrize(
    "text, message",
    [
        ("text,label\r\nI lied,3\r\n", r"bad.csv:1: header 'text,label' lacks \['sentence', 'concept_strength_label'\]"),
        ("I lied,3\r\nI ran,0\r\n", r"bad.csv:1: header 'I lied,3' lacks"),
        ("sentence,concept_strength_label\r\nI lied,3\r\nI ran,4\r\n", r"bad.csv:3: concept_strength_label 4 is outside 0-3"),
        ("sentence,concept_strength_label\r\nI lied,high\r\n", r"bad.csv:2: concept_strength_label 'high' is outside 0-3"),
        ("sentence,concept_strength_label\r\n\"A\nB\",1\r\nI ran, then hid,0\r\n", r"bad.csv:4: 3 fields, the header has 2; quote"),
        ("sentence,concept_strength_label\r\n,2\r\n", r"bad.csv:2: 'sentence' should be a non-empty string"),
        ("", r"bad.csv: empty file; expected the header"),
        ("sentence,concept_strength_label\r\n", r"bad.csv: no sentences"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, text, message):
    (tmp_path / "bad.csv").write_bytes(text.encode())
    with pytest.raises(ConceptFileError, match=message):
        read_concept_sentences(tmp_path / "bad.csv")


def test_entries_that_are_not_concepts_are_listed_not_skipped_in_silence(tmp_path):
    (tmp_path / "honest.jsonl").write_text(json.dumps({"sentence": "True.", "concept_strength_label": 0}) + "\n")
    (tmp_path / "brave.csv").write_text("sentence,concept_strength_label\nI ran in.,3\n")
    (tmp_path / "brave.jsonl").write_text("")  # the same concept twice
    (tmp_path / "notes.txt").write_text("todo")
    (tmp_path / "old data.csv").write_text("sentence,concept_strength_label\n")
    (tmp_path / "archive").mkdir()
    survey = survey_concepts(tmp_path)
    assert list(survey.concepts) == ["honest"]
    reasons = dict(survey.skipped_lines()[i].split(": ", 1) for i in range(len(survey.skipped)))
    assert set(reasons) == {"archive", "brave.csv", "brave.jsonl", "notes.txt", "old data.csv"}
    assert "both a .jsonl and a .csv" in reasons["brave.csv"] and "not a concept file" in reasons["notes.txt"]
    with pytest.raises(ConceptFileError, match="has both"):
        concept_source(tmp_path, "brave")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"concepts": ConceptSentences(root=str(tmp_path))})
        first = concept_discovery_sensor(context)
        assert [list(r.partition_keys) for r in first.dynamic_partitions_requests] == [["honest"]]
        instance.add_dynamic_partitions("concepts", ["honest"])
        second = concept_discovery_sensor(dg.build_sensor_context(
            instance=instance, resources={"concepts": ConceptSentences(root=str(tmp_path))}))
        assert "5 other entries not read" in second.skip_reason.skip_message and "notes.txt" in second.skip_reason.skip_message
