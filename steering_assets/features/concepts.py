"""Concept sentences: one JSONL file per concept, ``{"sentence": ..., "concept_strength_label": 0-3}`` a line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from steering_assets.jsonl import iter_json_objects
from steering_assets.personas.layout import validate_name


class ConceptFileError(ValueError):
    """A concept file that does not hold labelled sentences."""


@dataclass(frozen=True)
class ConceptSentence:
    sentence: str
    label: int


def read_concept_sentences(path: Path | str) -> list[ConceptSentence]:
    """Parse one concept file; problems name the file and the 1-based line."""
    path = Path(path)
    sentences = []
    for where, _, row in iter_json_objects(path, ConceptFileError):
        sentence, label = row.get("sentence"), row.get("concept_strength_label")
        if not isinstance(sentence, str) or not sentence.strip():
            raise ConceptFileError(f"{where}: 'sentence' should be a non-empty string")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label <= 3:
            raise ConceptFileError(f"{where}: concept_strength_label {label!r} is outside 0-3")
        sentences.append(ConceptSentence(sentence, label))
    if not sentences:
        raise ConceptFileError(f"{path}: no sentences")
    return sentences


def discover_concepts(root: Path | str) -> list[str]:
    """Concept names: every ``<name>.jsonl`` under ``root`` whose name is a plain identifier."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"concept folder {root} does not exist; set PERSONA_CONCEPTS_ROOT")
    return [validate_name(p.stem, "concept name") for p in sorted(root.glob("*.jsonl"))]


def write_concept_sentences(sentences: list[ConceptSentence], path: Path) -> None:
    from steering_assets.artifacts import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps({"sentence": s.sentence, "concept_strength_label": s.label}) + "\n" for s in sentences), encoding="utf-8")
