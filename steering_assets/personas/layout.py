"""The persona-subspace raw layout on disk, and the names that may appear in it.

    {data_root}/{source_model}/roles_240/responses/{role}.jsonl
    {data_root}/{source_model}/roles_240/extract_scores/{role}.json
    {data_root}/{source_model}/traits_240/responses/{trait}.jsonl
    {data_root}/{source_model}/traits_240/extract_scores/{trait}.json
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Role responses have no scores for these: they are the assistant's own voice,
# kept as negatives for evaluation rather than used as training data.
BASELINE_ROLES = frozenset({"0_default", "1_default", "default"})

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


class InvalidNameError(ValueError):
    """A persona or model name that could escape the data root or break a partition key."""


def validate_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a single safe path component, else raise InvalidNameError.

    Names come from file names and partition keys; a name such as ``../x`` or
    ``a/b`` must never turn into a path outside the roots we own.
    """
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"{what} must be a non-empty string, got {name!r}")
    if "/" in name or "\\" in name or "\x00" in name or ".." in name:
        raise InvalidNameError(
            f"{what} {name!r} contains a path separator or '..'; expected one plain "
            "file-name component such as 'accountant' or 'gemma-2-27b'"
        )
    if not _SAFE_NAME.match(name):
        raise InvalidNameError(
            f"{what} {name!r} has characters outside [A-Za-z0-9_.+-] or starts with "
            "punctuation; rename the file so it is a plain identifier"
        )
    return name


@dataclass(frozen=True)
class PersonaKind:
    """What differs between roles and traits: directory, column name, score rules."""

    name: str  # "roles" or "traits": the partition set and asset-key prefix
    directory: str  # directory under the source model
    column: str  # name column in the processed dataset: "role" or "trait"
    min_score: int
    max_score: int
    allows_refusal: bool
    labels: tuple[str, ...]
    # Selection defaults (DESIGN.md): roles keep >= 3, traits keep >= 75 and label "pos".
    default_keep_min_score: int
    default_keep_labels: tuple[str, ...]


ROLES = PersonaKind(
    name="roles",
    directory="roles_240",
    column="role",
    min_score=0,
    max_score=3,
    allows_refusal=False,
    labels=("pos",),
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
    labels=("pos", "neg"),
    default_keep_min_score=75,
    default_keep_labels=("pos",),
)
PERSONA_KINDS: dict[str, PersonaKind] = {ROLES.name: ROLES, TRAITS.name: TRAITS}


def persona_kind(name: str) -> PersonaKind:
    try:
        return PERSONA_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown persona kind {name!r}; expected one of {sorted(PERSONA_KINDS)}") from None


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

    def responses_path(self, data_root: Path) -> Path:
        return Path(data_root) / self.source_model / self.kind.directory / "responses" / f"{self.name}.jsonl"

    def scores_path(self, data_root: Path) -> Path:
        return Path(data_root) / self.source_model / self.kind.directory / "extract_scores" / f"{self.name}.json"


@dataclass(frozen=True)
class Discovery:
    """What a scan of the data root found."""

    personas: list[PersonaRef]
    baselines: list[PersonaRef]
    # (path, reason) for files that look like rollouts but cannot become partitions.
    rejected: list[tuple[Path, str]]


def discover_personas(data_root: Path | str, kind: PersonaKind) -> Discovery:
    """Scan ``data_root`` for ``*/<kind dir>/responses/*.jsonl``, sorted by model then name."""
    data_root = Path(data_root)
    personas: list[PersonaRef] = []
    baselines: list[PersonaRef] = []
    rejected: list[tuple[Path, str]] = []
    if not data_root.is_dir():
        raise FileNotFoundError(
            f"persona data root {str(data_root)!r} does not exist; set PERSONA_DATA_ROOT "
            "to the folder holding '<source_model>/roles_240/responses/*.jsonl'"
        )
    for path in sorted(data_root.glob(f"*/{kind.directory}/responses/*.jsonl")):
        model = path.parent.parent.parent.name
        try:
            ref = PersonaRef(kind, model, path.stem)
        except InvalidNameError as err:
            rejected.append((path, str(err)))
            continue
        (baselines if ref.is_baseline else personas).append(ref)
    return Discovery(personas, baselines, rejected)
