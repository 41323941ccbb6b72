"""Contrastive trait scenarios on disk and their known verdicts (trait-interp's datasets/traits layout).

    {scenarios_root}/{category}/{trait}/positive.jsonl   {"prompt", "system_prompt"} a line  (preferred)
    {scenarios_root}/{category}/{trait}/positive.txt     one scenario (a completion prefix) a line
    {scenarios_root}/{category}/{trait}/negative.jsonl | negative.txt
    {scenarios_root}/{category}/{trait}/definition.txt   the trait's definition (often a HIGH/MID/LOW rubric)
    {scenarios_root}/{category}/{trait}/verdicts.jsonl   optional known verdicts, for judge calibration

The layout and the ``.jsonl``-over-``.txt`` preference are those of trait-interp's
``datasets/traits`` loader. Each polarity is vetted on its own: the two sides need not have
the same number of items (real folders hold 11 to 470 a side), and an item is named by its
polarity and its 0-based index within that side. Text files are UTF-8 (a byte-order mark
is dropped), may lack a final newline and use any line ends; blank lines are skipped.

``verdicts.jsonl``, one known verdict a line::

    {"polarity": "positive", "idx": 3, "should_pass": false,
     "stage": "scenario", "prompt": "the item's text, checked if given", "why": "free text"}

``stage`` is ``"scenario"`` (stage 0, the default) or ``"response"`` (stage 2, the
completion of that scenario); ``prompt``, when given, must equal the item's current text, so
a verdict written for a line that has since been edited is refused rather than misapplied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from steering_assets.core.artifacts import file_digest, fingerprint
from steering_assets.core.errors import InputError, MissingInputError
from steering_assets.core.jsonl import iter_json_objects
from steering_assets.core.names import validate_name

POLARITIES = ("positive", "negative")
STAGES = ("scenario", "response")
DEFINITION_FILE = "definition.txt"
VERDICTS_FILE = "verdicts.jsonl"


class ScenarioFormatError(InputError, ValueError):
    """Scenario or verdict files that cannot be vetted as they are."""


@dataclass(frozen=True)
class ScenarioItem:
    prompt: str
    system_prompt: str | None = None

    def generation_text(self) -> str:
        """What a base model continues: the system prompt, a blank line, then the prompt (plain text, no template)."""
        return f"{self.system_prompt}\n\n{self.prompt}" if self.system_prompt else self.prompt


@dataclass(frozen=True)
class TraitScenarios:
    category: str
    trait: str
    definition: str
    positive: list[ScenarioItem]
    negative: list[ScenarioItem]
    sources: dict[str, str] = field(default_factory=dict)  # polarity -> file read
    ignored: list[str] = field(default_factory=list)  # files present but not read (a .txt beside its .jsonl)

    @property
    def partition_key(self) -> str:
        return f"{self.category}/{self.trait}"

    def side(self, polarity: str) -> list[ScenarioItem]:
        return self.positive if polarity == "positive" else self.negative


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ScenarioFormatError(f"{path}:{line}: not UTF-8 (byte {err.object[err.start]:#x}); re-save the file as UTF-8") from None


def polarity_file(folder: Path, polarity: str) -> Path | None:
    """``{polarity}.jsonl`` when present (the real pipeline prefers it), else ``{polarity}.txt``, else None."""
    for suffix in (".jsonl", ".txt"):
        path = Path(folder) / f"{polarity}{suffix}"
        if path.is_file():
            return path
    return None


def scenario_source_files(folder: Path) -> list[Path]:
    """The files a trait's vetting reads (definition and the chosen file of each polarity)."""
    files = [Path(folder) / DEFINITION_FILE] if (Path(folder) / DEFINITION_FILE).is_file() else []
    return files + [path for path in (polarity_file(folder, p) for p in POLARITIES) if path is not None]


def _read_jsonl_items(path: Path) -> list[ScenarioItem]:
    items = []
    expected = '{"prompt": "...", "system_prompt": "..."} (system_prompt optional)'
    for where, _, row in iter_json_objects(path, ScenarioFormatError, expected=expected,
                                           lines=_read_text(path).splitlines()):
        if "prompt" not in row:
            raise ScenarioFormatError(f"{where}: no \"prompt\" key (keys: {sorted(row)}); each line needs {expected}")
        prompt, system_prompt = row["prompt"], row.get("system_prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ScenarioFormatError(f"{where}: \"prompt\" must be non-empty text, got {prompt!r}")
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise ScenarioFormatError(f"{where}: \"system_prompt\" must be text or null, got {system_prompt!r}")
        # Kept as written (a completion prefix's trailing space can matter); an empty system prompt is none.
        items.append(ScenarioItem(prompt, system_prompt if system_prompt and system_prompt.strip() else None))
    return items


def _read_polarity(folder: Path, polarity: str) -> list[ScenarioItem]:
    path = polarity_file(folder, polarity)
    if path is None:
        raise ScenarioFormatError(f"{folder / (polarity + '.txt')}: missing; expected {polarity}.txt (one scenario a line) "
                                  f'or {polarity}.jsonl ({{"prompt", "system_prompt"}} a line)')
    if path.suffix == ".jsonl":
        items = _read_jsonl_items(path)
    else:
        items = [ScenarioItem(line.strip()) for line in _read_text(path).splitlines() if line.strip()]
    if not items:
        raise ScenarioFormatError(f"{path}: no scenarios; expected one scenario a line")
    return items


def read_trait_scenarios(folder: Path | str) -> TraitScenarios:
    """A trait folder's definition and both polarities; raises ScenarioFormatError naming the file and line."""
    folder = Path(folder)
    trait = validate_name(folder.name, "trait name")
    category = validate_name(folder.parent.name, "scenario category")
    definition_path = folder / DEFINITION_FILE
    if not definition_path.is_file():
        raise ScenarioFormatError(f"{definition_path}: missing; the judge needs the trait's definition to score anything")
    definition = _read_text(definition_path).strip()
    if not definition:
        raise ScenarioFormatError(f"{definition_path}: empty; write the trait's definition (a paragraph or a rubric)")
    sides = {polarity: _read_polarity(folder, polarity) for polarity in POLARITIES}
    sources = {polarity: polarity_file(folder, polarity).name for polarity in POLARITIES}
    ignored = [f"{p}.txt" for p in POLARITIES if sources[p].endswith(".jsonl") and (folder / f"{p}.txt").is_file()]
    return TraitScenarios(category, trait, definition, sides["positive"], sides["negative"], sources, ignored)


@dataclass(frozen=True)
class TraitScan:
    traits: list[Path]  # folders offered as partitions
    skipped: list[tuple[Path, str]]  # folders that look like traits but cannot be vetted, with what to fix


def scan_scenario_root(root: Path | str) -> TraitScan:
    """Every ``{category}/{trait}`` folder: offered when it holds a definition and both polarities.

    A folder holding some scenario files but not all is not offered; it is listed in ``skipped``
    with what is missing, so the discovery sensor can say so instead of failing every run.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"scenario folder {root} does not exist; set PERSONA_SCENARIOS_ROOT")
    traits, skipped = [], []
    names = (DEFINITION_FILE, *(f"{p}{s}" for p in POLARITIES for s in (".txt", ".jsonl")))
    candidates = sorted({path.parent for name in names for path in root.glob(f"*/*/{name}")})
    for folder in candidates:
        missing = [DEFINITION_FILE] if not (folder / DEFINITION_FILE).is_file() else []
        missing += [f"{p}.txt or {p}.jsonl" for p in POLARITIES if polarity_file(folder, p) is None]
        if missing:
            skipped.append((folder, f"missing {', '.join(missing)}"))
        else:
            traits.append(folder)
    return TraitScan(traits, skipped)


def discover_traits(root: Path | str) -> list[Path]:
    """Every ``{category}/{trait}`` folder that can be vetted (a new folder is a new partition)."""
    return scan_scenario_root(root).traits


@dataclass(frozen=True)
class Verdict:
    stage: str
    polarity: str
    idx: int
    should_pass: bool
    why: str = ""


def read_verdicts(folder: Path | str, scenarios: TraitScenarios) -> list[Verdict]:
    """Known verdicts from ``verdicts.jsonl`` (none when the file is absent), checked against the scenarios."""
    path = Path(folder) / VERDICTS_FILE
    if not path.is_file():
        return []
    verdicts: list[Verdict] = []
    seen: dict[tuple[str, str, int], int] = {}
    expected = '{"polarity": "positive"|"negative", "idx": 0, "should_pass": true|false}'
    for where, number, row in iter_json_objects(path, ScenarioFormatError, expected=expected,
                                                lines=_read_text(path).splitlines()):
        missing = [key for key in ("polarity", "idx", "should_pass") if key not in row]
        if missing:
            raise ScenarioFormatError(f"{where}: no {', '.join(repr(k) for k in missing)}; expected {expected}")
        stage, polarity, idx, should_pass = row.get("stage", "scenario"), row["polarity"], row["idx"], row["should_pass"]
        if stage not in STAGES:
            raise ScenarioFormatError(f"{where}: stage {stage!r} is not one of {list(STAGES)}")
        if polarity not in POLARITIES:
            raise ScenarioFormatError(f"{where}: polarity {polarity!r} is not one of {list(POLARITIES)}")
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise ScenarioFormatError(f"{where}: idx {idx!r} is not an integer (the item's 0-based index in its file)")
        if not isinstance(should_pass, bool):
            raise ScenarioFormatError(f"{where}: should_pass {should_pass!r} is not true or false")
        items = scenarios.side(polarity)
        if not 0 <= idx < len(items):
            raise ScenarioFormatError(
                f"{where}: {polarity} item {idx} does not exist: {scenarios.sources.get(polarity, polarity)} holds "
                f"{len(items)} items (idx 0-{len(items) - 1})")
        if "prompt" in row and row["prompt"] != items[idx].prompt:
            raise ScenarioFormatError(
                f"{where}: {polarity} item {idx} is now {items[idx].prompt[:80]!r}, but the verdict was written for "
                f"{str(row['prompt'])[:80]!r}; update or remove the verdict")
        if (stage, polarity, idx) in seen:
            raise ScenarioFormatError(f"{where}: a second verdict for {stage} {polarity} {idx} (the first is on line "
                                      f"{seen[(stage, polarity, idx)]})")
        seen[(stage, polarity, idx)] = number
        verdicts.append(Verdict(stage, polarity, idx, should_pass, str(row.get("why", ""))))
    return verdicts


def scenario_input_hashes(folder: Path) -> dict[str, str]:
    return {path.name: file_digest(path) for path in scenario_source_files(folder)}


def scenario_files_digest(folder: Path) -> str:
    """Hash of the files a trait's vetting reads (definition and each polarity's chosen file)."""
    return fingerprint(scenario_input_hashes(folder))


def scenario_data_version(folder: Path) -> str:
    """The data version of a trait's scenario files (``vetting/scenario_files``), as the asset and the sensor record it."""
    return scenario_files_digest(folder)[:32]
