"""The package layers import only downward (docs/architecture.md).

Every import of our own modules is read from the source (module level and inside functions,
since heavy imports live inside functions), grouped by layer, and checked against the order
below. ``python -m tests.test_layers`` prints the module map: groups, levels, arrows, and any
arrow that runs back up.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("steering_assets", "resources", "partitions", "demo")
# Folders installed under another import name (pyproject.toml [tool.setuptools.package-dir]).
IMPORT_NAMES = {"resources": "steering_assets.resources", "partitions": "steering_assets.partitions"}

# Bottom to top. A module may import its own layer and the layers below it. The concept packages
# share one layer but are ordered among themselves (personas' datasets feed steering, and so on).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("steering_assets.core",)),
    ("formats", ("steering_assets.formats",)),
    ("models", ("steering_assets.models",)),
    ("judge", ("steering_assets.judge",)),
    ("resources", ("steering_assets.resources",)),
    ("partitions", ("steering_assets.partitions",)),
    ("deployment", ("steering_assets.deployment",)),
    ("concept: persona_model", ("steering_assets.persona_model",)),
    ("concept: personas", ("steering_assets.personas",)),
    ("concept: steering", ("steering_assets.steering",)),
    ("concept: persona_space", ("steering_assets.persona_space",)),
    ("concept: features", ("steering_assets.features",)),
    ("concept: vetting", ("steering_assets.vetting",)),
    ("definitions", ("steering_assets.definitions",)),
    ("cli", ("steering_assets.cli", "steering_assets")),
    ("demo", ("demo",)),
]


def module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            parts = tuple(IMPORT_NAMES.get(parts[0], parts[0]).split(".")) + parts[1:]
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def import_edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Our module -> our modules it imports (``from a import b`` counts a.b when b is a module)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add(target)
                    break
    return edges


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it to LAYERS")
    return best


def upward_arrows(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} ({LAYERS[layer_of(source)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})"
        for source, targets in edges.items() for target in targets if layer_of(target) > layer_of(source)
    )


def group_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "steering_assets" and len(parts) > 1 else parts[0]


def module_map() -> dict:
    """Groups (a package's sub-packages or top-level modules), arrows between groups, and levels.

    A group's level is the length of the longest chain of groups below it, so a map whose arrows
    all run downward has as many levels as its longest import chain.
    """
    edges = import_edges(module_files())
    groups: dict[str, set[str]] = defaultdict(set)
    for source, targets in edges.items():
        groups[group_of(source)]
        for target in targets:
            if group_of(target) != group_of(source):
                groups[group_of(source)].add(group_of(target))
    for name in module_files():
        groups[group_of(name)]
    levels: dict[str, int] = {}

    def level(group: str, seen: tuple[str, ...] = ()) -> int:
        if group in levels:
            return levels[group]
        if group in seen:  # a cycle: counted once, reported by upward_arrows
            return 0
        levels[group] = value = 1 + max((level(g, seen + (group,)) for g in groups[group]), default=-1)
        return value

    for group in groups:
        level(group)
    return {"groups": len(groups), "levels": 1 + max(levels.values()), "arrows": sum(len(t) for t in groups.values()),
            "upward": upward_arrows(edges), "by_level": levels}


def test_every_module_has_a_layer():
    for module in module_files():
        layer_of(module)


def test_no_import_runs_back_up():
    arrows = upward_arrows(import_edges(module_files()))
    assert not arrows, "imports that run back up the layers (docs/architecture.md):\n" + "\n".join(arrows)


def test_resources_and_partitions_import_no_concept_package():
    edges = import_edges(module_files())
    concept = [index for index, (name, _) in enumerate(LAYERS) if name.startswith("concept")][0]
    offending = [f"{s} -> {t}" for s, targets in edges.items() if s.split(".")[:2] in (["steering_assets", "resources"], ["steering_assets", "partitions"])
                 for t in targets if layer_of(t) >= concept]
    assert not offending, offending


def test_concept_logic_modules_do_not_import_dagster():
    """Plain-Python logic stays usable from a notebook: only a concept's Dagster files (assets.py or
    *_assets.py, jobs.py, definitions.py) import dagster."""
    dagster_files = {"assets.py", "checks.py", "jobs.py", "schedules.py", "sensors.py", "definitions.py", "__init__.py"}
    offending = []
    for name, path in module_files().items():
        if not any(name.startswith(f"steering_assets.{c}.") for c in ("personas", "steering", "features", "vetting", "formats", "models", "judge")):
            continue
        if path.name in dagster_files or path.name.endswith("_assets.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "dagster" or n.startswith("dagster.") or n.startswith("dagster_") for n in names):
                offending.append(name)
                break
    assert not offending, offending


def test_the_wheel_holds_every_package_and_not_the_demo():
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {setuptools["package-dir"].get(p, p.replace(".", "/")): p for p in setuptools["packages"]}
    on_disk = {str(path.parent.relative_to(ROOT)) for package in PACKAGES if package != "demo"
               for path in (ROOT / package).rglob("__init__.py")}
    assert on_disk == set(folders), f"pyproject.toml packages differ from the folders: {sorted(on_disk ^ set(folders))}"
    assert not any(p == "demo" or p.startswith("demo.") for p in setuptools["packages"])


def test_resources_and_partitions_import_as_steering_assets_subpackages():
    import steering_assets.partitions.personas
    import steering_assets.resources.storage

    assert Path(steering_assets.resources.storage.__file__).parent == ROOT / "resources"
    assert Path(steering_assets.partitions.personas.__file__).parent == ROOT / "partitions"


def test_benchmarks_that_use_the_demo_or_test_helpers_find_them_in_the_checkout():
    """demo/ and tests/ are not installed: a benchmark run as ``python benchmarks/x.py`` puts the root on sys.path."""
    missing = [path.name for path in sorted((ROOT / "benchmarks").glob("*.py"))
               if re.search(r"^\s*(from|import) (demo|tests)\b", path.read_text(), flags=re.M)
               and "sys.path.insert(0" not in path.read_text()]
    assert not missing, missing


def test_every_name_a_benchmark_imports_from_the_project_exists():
    """A moved function must not leave a benchmark importing it from its old place (they run outside the suite)."""
    import importlib

    sys.path.insert(0, str(ROOT))
    missing = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in (
                    "steering_assets", "demo", "tests"):
                module = importlib.import_module(node.module)
                missing += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if not hasattr(module, a.name) and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert not missing, missing


if __name__ == "__main__":
    found = module_map()
    print(f"{found['groups']} module groups on {found['levels']} levels, {found['arrows']} arrows between groups, "
          f"{len(found['upward'])} running back up")
    for group, value in sorted(found["by_level"].items(), key=lambda item: (item[1], item[0])):
        print(f"  level {value:2d}  {group}")
    for arrow in found["upward"]:
        print("  UP: " + arrow)
    sys.exit(1 if found["upward"] else 0)
