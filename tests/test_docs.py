"""README.md and docs/*.md: every relative link points at a file that exists, every anchor into a Markdown file
names one of its headings (GitHub's slugs), and the README stays short."""

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 160

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """The file's lines outside fenced code blocks, numbered from 1."""
    lines, fence = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            lines.append((number, line))
    return lines


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in prose_lines(path):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((number, match.group(1).strip("<>")))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lowercased, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    for _, line in prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        if count:
            seen.setdefault(f"{base}-{count}", 1)
    return set(seen)


def relative_links() -> list[tuple[Path, int, str]]:
    return [
        (path, number, target)
        for path in markdown_files()
        for number, target in links(path)
        if not target.startswith(EXTERNAL) and not target.startswith("#")
    ]


def test_the_docs_hold_pages():
    assert (ROOT / "README.md").is_file()
    assert list((ROOT / "docs").glob("*.md")), "no docs/*.md pages"


@pytest.mark.parametrize(
    "path,number,target",
    relative_links(),
    ids=lambda value: str(value.relative_to(ROOT)) if isinstance(value, Path) else str(value),
)
def test_relative_link_resolves(path, number, target):
    file_part, _, anchor = target.partition("#")
    linked = (path.parent / file_part).resolve()
    where = f"{path.relative_to(ROOT)}:{number}: {target}"
    assert linked.exists(), f"{where}: {linked} does not exist"
    if anchor and linked.suffix == ".md":
        assert anchor in anchors(linked), f"{where}: no heading with the anchor #{anchor} in {file_part}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_same_page_anchors_resolve(path):
    own = anchors(path)
    missing = [f"{number}: {target}" for number, target in links(path) if target.startswith("#") and target[1:] not in own]
    assert not missing, f"{path.relative_to(ROOT)}: anchors with no heading: {missing}"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines, at most {README_MAX_LINES}"


def test_slug_is_githubs():
    assert slug("The offline likelihood judge (`PERSONA_JUDGE_BACKEND=likelihood`)") == (
        "the-offline-likelihood-judge-persona_judge_backendlikelihood"
    )
    assert slug("Scale-out: Postgres, Celery, Kubernetes") == "scale-out-postgres-celery-kubernetes"
    assert slug("What `make demo` runs") == "what-make-demo-runs"


def test_the_readme_graph_is_rendered_from_the_definitions():
    import re

    from steering_assets.cli.graph import asset_graph_mermaid
    from steering_assets.core.settings import Settings
    from steering_assets.definitions import build_definitions

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```mermaid\n(.*?)\n```", readme, flags=re.S).group(1)
    assert block == asset_graph_mermaid(build_definitions(settings=Settings())), (
        "README.md's asset graph is stale: replace it with the output of python -m steering_assets.cli.graph")
