"""The negatives of the steering stage: the baseline assistant's replies a persona is contrasted with.

Two sources, both recorded in each artifact's metadata: the source model's baseline files
(``baseline_dataset``: 0_default, 1_default, default) and the persona's own baseline rows
(roles ``default``, traits ``neutral``) in its ``persona_dataset``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from steering_assets.core.artifacts import ArtifactStore
from steering_assets.formats.rollouts import BASELINE_ROLES, ROLES, PersonaRef
from steering_assets.models.errors import MissingBaselineError
from steering_assets.personas.materialize import (
    DATASET_FILE,
    dataset_folder,
    load_baseline_rows,
    load_persona_dataset,
    split_folder,
)

# The two sources of negatives, as their rows are labelled in metadata.
BASELINE_FILE = "baseline_file"
IN_FILE_ROWS = "in_file_rows"


def answers(conversations: Sequence[list[dict[str, str]]]) -> list[str]:
    return [c[-1]["content"] for c in conversations if c and c[-1]["role"] == "assistant"]


def sample(items: list, count: int, seed: int) -> list:
    if len(items) <= count:
        return list(items)
    order = np.random.default_rng(seed).permutation(len(items))[:count]
    return [items[i] for i in sorted(order)]


def baseline_refs(store: ArtifactStore, source_model: str) -> list[PersonaRef]:
    """The baseline files of ``source_model`` materialised by ``roles/baseline_dataset``."""
    refs = []
    for name in sorted(BASELINE_ROLES):
        ref = PersonaRef(ROLES, source_model, name)
        if (dataset_folder(store, ref) / DATASET_FILE).is_file():
            refs.append(ref)
    return refs


@dataclass
class Negatives:
    """Baseline conversations used as negatives, and where each came from.

    ``sources`` holds one entry per dataset read: ``{"source": "baseline_file" | "in_file_rows",
    "dataset": "<kind>/<source_model>/<name>", "rows": n}``; ``prints`` the fingerprints of
    those datasets, so an artifact built from them is rebuilt when they change.
    """

    conversations: list = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    prints: list[str] = field(default_factory=list)

    def add(self, source: str, ref: PersonaRef, conversations: list, dataset_print: str) -> None:
        if conversations:
            self.conversations += conversations
            self.sources.append({"source": source, "dataset": f"{ref.kind.name}/{ref.partition_key}", "rows": len(conversations)})
            self.prints.append(dataset_print)

    def extend(self, other: "Negatives") -> None:
        self.conversations += other.conversations
        self.sources += other.sources
        self.prints += other.prints

    def summary(self, used: int | None = None) -> dict[str, Any]:
        """What the metadata shows: which kinds of source were read, rows per source, rows available (and used)."""
        kinds = sorted({s["source"] for s in self.sources})
        summary = {
            "sources": kinds,
            "rows_by_source": {s: sum(e["rows"] for e in self.sources if e["source"] == s) for s in kinds},
            "datasets": self.sources,
            "rows_available": len(self.conversations),
        }
        return summary if used is None else {**summary, "rows_used": used}


def _expected_baselines(refs: Sequence[PersonaRef]) -> str:
    models = sorted({ref.source_model for ref in refs})
    files = " or ".join(f"{{model}}/{path}" for path in ("responses/default.jsonl", f"{ROLES.directory}/responses/0_default.jsonl",
                                                         f"{ROLES.directory}/responses/1_default.jsonl"))
    labels = "; ".join(f"{kind.name}: {', '.join(repr(label) for label in kind.baseline_labels)}"
                       for kind in sorted({ref.kind for ref in refs}, key=lambda k: k.name))
    return (
        f"expected baseline files of source model {', '.join(map(repr, models))} ({files}, read by "
        f"roles/baseline_dataset), or baseline rows inside the persona's own responses file ({labels}; "
        "persona-subspace roles/2_responses.py writes 'default' rows with its include-default option on, "
        "traits/2_responses.py writes 'neutral' rows)"
    )


def baseline_file_negatives(store: ArtifactStore, source_model: str) -> Negatives:
    """The rows of every baseline file of ``source_model`` (empty when it has none)."""
    negatives = Negatives()
    for ref in baseline_refs(store, source_model):
        manifest = store.load_manifest(dataset_folder(store, ref), verify=False)
        negatives.add(BASELINE_FILE, ref, load_persona_dataset(store, ref)["messages"].to_list(), manifest["fingerprint"])
    return negatives


def in_file_negatives(store: ArtifactStore, ref: PersonaRef) -> Negatives:
    """The persona's own baseline-labelled rows (roles ``default``, traits ``neutral``/``default``)."""
    negatives = Negatives()
    manifest = store.load_manifest(dataset_folder(store, ref), verify=False)
    negatives.add(IN_FILE_ROWS, ref, load_baseline_rows(store, ref)["messages"].to_list(), manifest["fingerprint"])
    return negatives


def persona_negatives(store: ArtifactStore, ref: PersonaRef, files: Negatives | None = None) -> Negatives:
    """Negatives for one persona: its source model's baseline files, then its own baseline rows.

    Both are the assistant answering without the persona; baseline files are those of
    the assistant-axis layout and older persona-subspace trees, in-file rows those of the
    current persona-subspace writers. ``files`` reuses baseline files already read.
    Raises MissingBaselineError, saying what was expected, when neither exists.
    """
    negatives = Negatives()
    negatives.extend(files if files is not None else baseline_file_negatives(store, ref.source_model))
    negatives.extend(in_file_negatives(store, ref))
    if not negatives.conversations:
        labels = sorted(load_persona_dataset(store, ref)["label"].unique().to_list())
        raise MissingBaselineError(
            f"{ref.kind.name}/{ref.partition_key}: no baseline rows to use as negatives: {_expected_baselines([ref])}; "
            f"its dataset has only labels {labels} and no baseline file of {ref.source_model!r} is materialised"
        )
    return negatives


def kind_negatives(store: ArtifactStore, refs: Sequence[PersonaRef]) -> Negatives:
    """Negatives for a whole kind: every source model's baseline files and every persona's own baseline rows.

    Raises MissingBaselineError naming the source models that have neither.
    """
    negatives = Negatives()
    by_model: dict[str, list[PersonaRef]] = {}
    for ref in refs:
        by_model.setdefault(ref.source_model, []).append(ref)
    missing = []
    for model, model_refs in sorted(by_model.items()):
        found = baseline_file_negatives(store, model)
        for ref in model_refs:
            found.extend(in_file_negatives(store, ref))
        if not found.conversations:
            missing.append(model)
        negatives.extend(found)
    if missing:
        raise MissingBaselineError(
            f"no baseline rows to use as negatives for source model(s) {missing}: "
            f"{_expected_baselines([r for r in refs if r.source_model in missing])}"
        )
    return negatives


def split_print(store: ArtifactStore, ref: PersonaRef) -> str:
    return store.load_manifest(split_folder(store, ref), verify=False)["fingerprint"]
