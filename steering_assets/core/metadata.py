"""Small builders for Dagster UI metadata: markdown tables and bar charts that read well in the UI."""

from __future__ import annotations

import base64
from typing import Any, Iterable, Mapping, Sequence

import dagster as dg

_BAR_WIDTH = 30


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def md_bar_chart(counts: Mapping[str, int], label: str = "value") -> dg.MetadataValue:
    """A markdown table with one bar per key, scaled to the largest count."""
    largest = max(counts.values(), default=0) or 1
    rows = [(key, count, "█" * max(1, round(_BAR_WIDTH * count / largest)) if count else "") for key, count in counts.items()]
    return dg.MetadataValue.md(md_table([label, "count", ""], rows))


def md_counts(counts: Mapping[str, int], key: str = "reason") -> dg.MetadataValue:
    rows = sorted(counts.items(), key=lambda item: -item[1]) or [("(none)", 0)]
    return dg.MetadataValue.md(md_table([key, "rows"], rows))


def png_markdown(png: bytes, alt: str) -> str:
    """An inline image the Dagster UI renders in a markdown metadata entry."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
