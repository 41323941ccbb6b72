"""The raw rollout layouts on disk, the labels their writers emit, and the names that may appear in them.

Two layouts are read (``{data_root}`` is PERSONA_DATA_ROOT):

    persona-subspace (lu-christina/persona-subspace roles/ and traits/ scripts):
        {data_root}/{source_model}/roles_240/responses/{role}.jsonl
        {data_root}/{source_model}/roles_240/extract_scores/{role}.json   (or extract_labels/, the
                                                roles/4_judge.py default output folder)
        {data_root}/{source_model}/traits_240/responses/{trait}.jsonl
        {data_root}/{source_model}/traits_240/extract_scores/{trait}.json
    assistant-axis (safety-research/assistant-axis pipeline/1_generate.py and 3_judge.py):
        {data_root}/{source_model}/responses/{role}.jsonl
        {data_root}/{source_model}/scores/{role}.json

The assistant-axis pipeline rolls out roles only (275 role instruction files and
``default.json``, judged 0-3), so its files are role partitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from steering_assets.core.artifacts import file_digest, fingerprint
from steering_assets.core.errors import InputError, MissingInputError
from steering_assets.core.names import InvalidNameError, validate_name  # noqa: F401 (re-used by readers of this layout)

# Role responses with no scores: the assistant's own voice, kept as negatives for evaluation
# rather than used as training data. ``default`` is the assistant-axis baseline
# (responses/default.jsonl, 5 prompts from "" to "You are {model}."); ``0_default`` and
# ``1_default`` appear in older persona-subspace trees.
BASELINE_ROLES = frozenset({"0_default", "1_default", "default"})





class RolloutFormatError(InputError, ValueError):
    """Raw rollout or score data (or its place on disk) that matches none of the writers' formats."""




@dataclass(frozen=True)
class PersonaKind:
    """What differs between roles and traits: directory, column name, labels, score rules."""

    name: str  # "roles" or "traits": the partition set and asset-key prefix
    directory: str  # persona-subspace directory under the source model
    column: str  # name column in the processed dataset: "role" or "trait"
    min_score: int
    max_score: int
    allows_refusal: bool
    # Every label the writers put on a response line of this kind.
    labels: tuple[str, ...]
    # Labels whose rows are baselines (the assistant without the persona): never training
    # rows, kept in the dataset as baseline negatives.
    baseline_labels: tuple[str, ...]
    # Selection defaults (docs/inputs.md#selection-defaults): roles keep >= 3, traits keep >= 75 and label "pos".
    default_keep_min_score: int
    default_keep_labels: tuple[str, ...]
    # The label a row's score key carries when it differs from the row's own label: the
    # trait judge scores "neutral" rows under "default_p{i}_q{j}".
    score_labels: tuple[tuple[str, str], ...] = ()

    def score_label(self, label: str) -> str:
        return dict(self.score_labels).get(label, label)

    @property
    def key_labels(self) -> tuple[str, ...]:
        """Labels that may appear in a score key of this kind."""
        return tuple(dict.fromkeys(self.score_label(label) for label in self.labels))


ROLES = PersonaKind(
    name="roles",
    directory="roles_240",
    column="role",
    min_score=0,
    max_score=3,
    allows_refusal=False,
    # persona-subspace roles/2_responses.py writes "pos" and, with include_default (its
    # default), "default" rows for 5 default system prompts ("" ... "Respond as yourself.").
    labels=("pos", "default"),
    baseline_labels=("default",),
    default_keep_min_score=3,
    default_keep_labels=("pos",),
)
TRAITS = PersonaKind(
    name="traits",
    directory="traits_240",
    column="trait",
    min_score=0,
    max_score=100,
    allows_refusal=True,
    # traits/2_responses.py writes "pos", "neg" and "neutral"; files from before its
    # migrate_responses.py / rename_field.py carry "default" where it now writes "neutral".
    labels=("pos", "neg", "neutral", "default"),
    baseline_labels=("neutral", "default"),
    default_keep_min_score=75,
    default_keep_labels=("pos",),
    score_labels=(("neutral", "default"),),
)
PERSONA_KINDS: dict[str, PersonaKind] = {ROLES.name: ROLES, TRAITS.name: TRAITS}


@dataclass(frozen=True)
class RolloutLayout:
    """Where one writer puts a kind's responses and scores, relative to a source-model folder."""

    name: str
    kinds: tuple[str, ...]  # persona kinds this layout can hold
    responses: str  # folder of ``{name}.jsonl``; "{kind_dir}" is the kind's persona-subspace directory
    scores: str  # folder of ``{name}.json``
    other_scores: tuple[str, ...] = ()  # other names writers give the score folder

    def holds(self, kind: PersonaKind) -> bool:
        return kind.name in self.kinds

    def responses_dir(self, data_root: Path | str, source_model: str, kind: PersonaKind) -> Path:
        return Path(data_root) / source_model / self.responses.format(kind_dir=kind.directory)

    def scores_dir(self, data_root: Path | str, source_model: str, kind: PersonaKind) -> Path:
        return Path(data_root) / source_model / self.scores.format(kind_dir=kind.directory)

    def score_dirs(self, data_root: Path | str, source_model: str, kind: PersonaKind) -> list[Path]:
        """The score folder and the other names writers give it, in order of preference."""
        return [Path(data_root) / source_model / folder.format(kind_dir=kind.directory)
                for folder in (self.scores, *self.other_scores)]

    def pattern(self, kind: PersonaKind) -> str:
        """Glob of this layout's responses files of ``kind`` under a data root."""
        return f"*/{self.responses.format(kind_dir=kind.directory)}/*.jsonl"

    def describe(self, kind: PersonaKind) -> str:
        folder = "{source_model}/" + self.responses.format(kind_dir=kind.directory)
        scores = "{source_model}/" + self.scores.format(kind_dir=kind.directory)
        return f"{folder}/<name>.jsonl with {scores}/<name>.json ({self.name})"


# roles/4_judge.py writes to roles_240/extract_labels unless --output-dir says extract_scores,
# which is what roles/5_vectors.py and the traits scripts use.
PERSONA_SUBSPACE = RolloutLayout("persona-subspace", ("roles", "traits"), "{kind_dir}/responses",
                                 "{kind_dir}/extract_scores", ("{kind_dir}/extract_labels",))
ASSISTANT_AXIS = RolloutLayout("assistant-axis", ("roles",), "responses", "scores")
LAYOUTS: tuple[RolloutLayout, ...] = (PERSONA_SUBSPACE, ASSISTANT_AXIS)


def expected_layouts() -> str:
    """One sentence naming every file a data root may hold, for messages."""
    parts = [layout.describe(kind) for layout in LAYOUTS for kind in PERSONA_KINDS.values() if layout.holds(kind)]
    return "; ".join(parts)


PARTITION_SEPARATOR = "/"


@dataclass(frozen=True)
class PersonaRef:
    """One persona of one source model: the unit every persona asset is partitioned by."""

    kind: PersonaKind
    source_model: str
    name: str

    def __post_init__(self) -> None:
        validate_name(self.source_model, "source model")
        validate_name(self.name, f"{self.kind.column} name")

    @property
    def partition_key(self) -> str:
        # The source model is part of the key so two models' roles never collide.
        return f"{self.source_model}{PARTITION_SEPARATOR}{self.name}"

    @property
    def is_baseline(self) -> bool:
        return self.kind is ROLES and self.name in BASELINE_ROLES

    @classmethod
    def from_partition_key(cls, kind: PersonaKind, key: str) -> "PersonaRef":
        model, sep, name = key.partition(PARTITION_SEPARATOR)
        if not sep:
            raise InvalidNameError(
                f"partition key {key!r} is not of the form '<source_model>/<{kind.column}>'"
            )
        return cls(kind, model, name)

    def candidate_responses(self, data_root: Path | str) -> dict[str, Path]:
        """Where each layout that can hold this kind would keep this persona's responses."""
        return {
            layout.name: layout.responses_dir(data_root, self.source_model, self.kind) / f"{self.name}.jsonl"
            for layout in LAYOUTS
            if layout.holds(self.kind)
        }

    def layout(self, data_root: Path | str) -> RolloutLayout:
        """The layout holding this persona's responses file.

        Raises RolloutFormatError when both layouts hold one (two writers' files for one
        partition: which to train on is the user's choice). With none, the
        persona-subspace layout is returned, so a missing file is named where most trees keep it.
        """
        found = [layout for layout in LAYOUTS if layout.holds(self.kind)
                 and (layout.responses_dir(data_root, self.source_model, self.kind) / f"{self.name}.jsonl").is_file()]
        if len(found) > 1:
            paths = " and ".join(str(p) for p in self.candidate_responses(data_root).values())
            raise RolloutFormatError(
                f"{self.partition_key}: responses in two layouts ({paths}); keep one of them "
                "(persona-subspace or assistant-axis), so the partition has one source"
            )
        return found[0] if found else PERSONA_SUBSPACE

    def responses_path(self, data_root: Path | str) -> Path:
        return self.layout(data_root).responses_dir(data_root, self.source_model, self.kind) / f"{self.name}.jsonl"

    def scores_path(self, data_root: Path | str) -> Path:
        """The score file; a layout's other score folder name is used when only it holds one.

        Raises RolloutFormatError when two score folders of the layout hold this persona's file.
        """
        layout = self.layout(data_root)
        paths = [folder / f"{self.name}.json" for folder in layout.score_dirs(data_root, self.source_model, self.kind)]
        present = [path for path in paths if path.is_file()]
        if len(present) > 1:
            raise RolloutFormatError(
                f"{self.partition_key}: score files in two folders ({' and '.join(map(str, present))}); keep one"
            )
        return present[0] if present else paths[0]


@dataclass
class Discovery:
    """What a scan of the data root found for one persona kind."""

    personas: list[PersonaRef]
    baselines: list[PersonaRef]
    # (path, reason) for files that look like rollouts but cannot become partitions.
    rejected: list[tuple[Path, str]]
    # partition key -> layout name, for personas and baselines.
    layouts: dict[str, str] = field(default_factory=dict)


# A source-model folder named like these means PERSONA_DATA_ROOT points one level too deep.
_KIND_DIRECTORIES = {kind.directory for kind in PERSONA_KINDS.values()}


def _require_root(data_root: Path) -> None:
    if not data_root.is_dir():
        raise MissingInputError(
            f"persona data root {str(data_root)!r} does not exist; set PERSONA_DATA_ROOT to the folder "
            f"holding the source-model folders: {expected_layouts()}"
        )


def discover_personas(data_root: Path | str, kind: PersonaKind) -> Discovery:
    """Scan ``data_root`` for responses of ``kind`` in every layout, sorted by model then name.

    Files that cannot become partitions are returned in ``rejected`` with the reason:
    names that are not plain identifiers, one persona in two layouts, files in a
    responses folder that are not ``*.jsonl`` (e.g. the ``.jsonl.backup`` copies that
    persona-subspace's migration scripts leave), and a data root set one level too deep.
    """
    data_root = Path(data_root)
    _require_root(data_root)
    rejected: list[tuple[Path, str]] = []
    found: dict[tuple[str, str], list[tuple[RolloutLayout, Path]]] = {}
    for layout in LAYOUTS:
        if not layout.holds(kind):
            continue
        pattern = layout.pattern(kind)
        folder_pattern = pattern.rsplit("/", 1)[0]
        for folder in sorted(data_root.glob(folder_pattern)):
            if not folder.is_dir():
                continue
            model = folder.relative_to(data_root).parts[0]
            if model in _KIND_DIRECTORIES:
                rejected.append((folder, f"'{model}' is a persona-subspace kind folder, not a source model: "
                                         f"set PERSONA_DATA_ROOT to {data_root.parent} (the folder above {data_root.name})"))
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix != ".jsonl" or not path.is_file():
                    rejected.append((path, f"not a responses file: a {layout.name} responses folder holds <name>.jsonl files"))
                    continue
                found.setdefault((model, path.stem), []).append((layout, path))
    personas: list[PersonaRef] = []
    baselines: list[PersonaRef] = []
    layouts: dict[str, str] = {}
    for (model, name), places in sorted(found.items()):
        if len(places) > 1:
            rejected.append((places[0][1], f"the same {kind.column} also has {places[1][1]}; keep one of the two layouts"))
            continue
        try:
            ref = PersonaRef(kind, model, name)
        except InvalidNameError as err:
            rejected.append((places[0][1], str(err)))
            continue
        layouts[ref.partition_key] = places[0][0].name
        (baselines if ref.is_baseline else personas).append(ref)
    return Discovery(personas, baselines, rejected, layouts)


def discover_every_persona(data_root: Path | str) -> list[PersonaRef]:
    """Every role and trait persona under ``data_root`` (baselines excluded), roles first."""
    return [ref for kind in PERSONA_KINDS.values() for ref in discover_personas(data_root, kind).personas]


def data_root_problem(data_root: Path | str) -> str | None:
    """Why ``data_root`` holds no rollouts in any layout, or None when it holds some.

    The message says what was expected and what is there, so an empty or mistaken
    root is never zero partitions in silence.
    """
    data_root = Path(data_root)
    _require_root(data_root)
    for layout in LAYOUTS:
        for kind in PERSONA_KINDS.values():
            if layout.holds(kind) and any(data_root.glob(layout.pattern(kind))):
                return None
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in data_root.iterdir())
    hint = ""
    if any(name.rstrip("/") in _KIND_DIRECTORIES | {"responses", "scores", "extract_scores"} for name in entries):
        hint = f" It looks like a source-model folder: set PERSONA_DATA_ROOT to {data_root.parent}."
    shown = ", ".join(entries[:10]) + (f", ... ({len(entries)} entries)" if len(entries) > 10 else "")
    return (
        f"no rollouts under {data_root}: expected {expected_layouts()}. "
        f"Found: {shown or 'nothing'}.{hint}"
    )


def rollout_data_version(ref: PersonaRef, data_root: Path | str) -> str:
    """Content hash of a persona's raw files; it changes exactly when their bytes change."""
    paths = (ref.responses_path(data_root), ref.scores_path(data_root))
    return fingerprint({path.name: file_digest(path) if path.is_file() else "<absent>" for path in paths})[:32]
