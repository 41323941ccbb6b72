"""Concept sentences: one file per concept, each sentence labelled 0-3 for how strongly it shows the concept.

Two formats are read, both named ``{concept}.<ext>`` in the concepts root:

- ``{concept}.jsonl``: ``{"sentence": ..., "concept_strength_label": 0-3}`` a line;
- ``{concept}.csv``: the interpretability pipeline's files (TRACING-TRAIT-EMERGENCE s0
  ``label_sentences.py`` / ``expand_dataset.py``, Python's ``csv.writer``): header
  ``sentence,concept_strength_label``, CRLF line ends, fields with commas quoted.
  Other columns (a seed file's extras) are ignored.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from steering_assets.core.errors import InputError, MissingInputError
from steering_assets.core.jsonl import iter_json_objects
from steering_assets.core.names import InvalidNameError, validate_name

CONCEPT_SUFFIXES = (".jsonl", ".csv")
CSV_COLUMNS = ("sentence", "concept_strength_label")


class ConceptFileError(InputError, ValueError):
    """A concept file that does not hold labelled sentences."""


@dataclass(frozen=True)
class ConceptSentence:
    sentence: str
    label: int


def _label(value: object, where: str) -> int:
    if isinstance(value, str):  # CSV cells; "2.0" is what pandas writes for an int column with gaps
        text = value.strip()
        try:
            number = float(text) if text else None
        except ValueError:
            number = None
        value = int(number) if number is not None and number.is_integer() else value
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 3:
        raise ConceptFileError(f"{where}: concept_strength_label {value!r} is outside 0-3")
    return value


def _sentence(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConceptFileError(f"{where}: 'sentence' should be a non-empty string")
    return value


def _read_jsonl(path: Path) -> list[ConceptSentence]:
    sentences = []
    for where, _, row in iter_json_objects(path, ConceptFileError):
        sentences.append(ConceptSentence(_sentence(row.get("sentence"), where), _label(row.get("concept_strength_label"), where)))
    return sentences


def _read_csv(path: Path) -> list[ConceptSentence]:
    sentences = []
    try:
        # newline="" lets the csv module see CRLF and newlines inside quoted fields; utf-8-sig drops a BOM.
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ConceptFileError(f"{path}: empty file; expected the header 'sentence,concept_strength_label'")
            names = [name.strip() for name in header]
            missing = [name for name in CSV_COLUMNS if name not in names]
            if missing:
                raise ConceptFileError(
                    f"{path}:1: header {','.join(header)!r} lacks {missing}; expected 'sentence,concept_strength_label' "
                    "as the first line"
                )
            sentence_at, label_at = names.index("sentence"), names.index("concept_strength_label")
            start = reader.line_num
            for cells in reader:
                # line_num is the physical line the record ended on; a quoted field may span lines.
                where = f"{path}:{start + 1}"
                start = reader.line_num
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) != len(names):
                    raise ConceptFileError(
                        f"{where}: {len(cells)} fields, the header has {len(names)}; quote sentences that hold commas"
                    )
                sentences.append(ConceptSentence(_sentence(cells[sentence_at], where), _label(cells[label_at], where)))
    except UnicodeDecodeError as err:
        raise ConceptFileError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except csv.Error as err:
        raise ConceptFileError(f"{path}: malformed CSV ({err})") from None
    return sentences


def read_concept_sentences(path: Path | str) -> list[ConceptSentence]:
    """Parse one concept file (``.jsonl`` or ``.csv``); problems name the file and the 1-based line."""
    path = Path(path)
    if path.suffix not in CONCEPT_SUFFIXES:
        raise ConceptFileError(f"{path}: not a concept file; expected {' or '.join(CONCEPT_SUFFIXES)}")
    sentences = _read_csv(path) if path.suffix == ".csv" else _read_jsonl(path)
    if not sentences:
        raise ConceptFileError(f"{path}: no sentences")
    return sentences


@dataclass
class ConceptDiscovery:
    """The concept files of a root, and every other entry with why it is not a concept."""

    concepts: dict[str, Path] = field(default_factory=dict)  # name -> file
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def skipped_lines(self) -> list[str]:
        return [f"{path.name}: {reason}" for path, reason in self.skipped]


def survey_concepts(root: Path | str) -> ConceptDiscovery:
    """Every ``<name>.jsonl`` and ``<name>.csv`` under ``root``; anything else is listed in ``skipped``."""
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"concept folder {root} does not exist; set PERSONA_CONCEPTS_ROOT")
    found = ConceptDiscovery()
    candidates: dict[str, list[Path]] = {}
    for path in sorted(root.iterdir()):
        if path.is_dir():
            found.skipped.append((path, "a folder; concept files sit directly in the concepts root"))
        elif path.suffix not in CONCEPT_SUFFIXES:
            found.skipped.append((path, f"not a concept file ({' or '.join(CONCEPT_SUFFIXES)})"))
        else:
            candidates.setdefault(path.stem, []).append(path)
    for stem, paths in candidates.items():
        if len(paths) > 1:
            found.skipped += [(p, f"{stem!r} has both a .jsonl and a .csv file; keep one") for p in paths]
            continue
        try:
            found.concepts[validate_name(stem, "concept name")] = paths[0]
        except InvalidNameError as err:
            found.skipped.append((paths[0], str(err)))
    found.concepts = dict(sorted(found.concepts.items()))
    return found


def discover_concepts(root: Path | str) -> list[str]:
    """Concept names: every ``<name>.jsonl`` or ``<name>.csv`` under ``root`` whose name is a plain identifier."""
    return list(survey_concepts(root).concepts)


def concept_source(root: Path | str, concept: str) -> Path:
    """The file of one concept: ``{concept}.jsonl`` or ``{concept}.csv`` (an error names both when both or neither exist)."""
    validate_name(concept, "concept name")
    paths = [Path(root) / f"{concept}{suffix}" for suffix in CONCEPT_SUFFIXES]
    present = [p for p in paths if p.is_file()]
    if len(present) > 1:
        raise ConceptFileError(f"concept {concept!r} has both {present[0]} and {present[1]}; keep one")
    if not present:
        raise MissingInputError(f"concept {concept!r} has no file: expected {paths[0]} or {paths[1]}")
    return present[0]


def write_concept_sentences(sentences: list[ConceptSentence], path: Path) -> None:
    from steering_assets.core.artifacts import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps({"sentence": s.sentence, "concept_strength_label": s.label}) + "\n" for s in sentences), encoding="utf-8")
