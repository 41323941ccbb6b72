"""Reading JSON-lines files with errors that name the file and the line."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterable, Iterator


def iter_json_objects(path: Path, error: type[ValueError], *, expected: str | None = None,
                      lines: Iterable[str] | None = None) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Yield ``(where, line_number, object)`` for every non-blank line; ``where`` is ``file:line``.

    A line that is not JSON, or not a JSON object, raises ``error`` naming ``where``, and
    ``expected`` (what a line should look like) when given. ``lines``: the file's text already
    read (e.g. decoded with a BOM-tolerant codec); by default ``path`` is read as UTF-8.
    """
    hint = f"; expected {expected}" if expected else ""
    with path.open("r", encoding="utf-8") if lines is None else contextlib.nullcontext(lines) as source:
        for line_number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{where}: malformed JSON ({err.msg} at column {err.colno}){hint}") from None
            if not isinstance(obj, dict):
                raise error(f"{where}: expected a JSON object, got {type(obj).__name__}{hint}")
            yield where, line_number, obj
