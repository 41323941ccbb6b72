import json

import pytest

from steering_assets.demo.features import DEMO_CONCEPTS, concept_sentences, write_demo_concepts
from steering_assets.features.concepts import ConceptFileError, discover_concepts, read_concept_sentences


def test_demo_concepts_have_enough_sentences_per_label(tmp_path):
    paths = write_demo_concepts(tmp_path)
    assert discover_concepts(tmp_path) == sorted(DEMO_CONCEPTS)
    for path in paths:
        sentences = read_concept_sentences(path)
        assert len(sentences) >= 100
        assert {label: sum(s.label == label for s in sentences) for label in range(4)} == {0: 32, 1: 32, 2: 32, 3: 32}
    assert concept_sentences("humorous") == concept_sentences("humorous")  # seeded


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
