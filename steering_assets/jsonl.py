"""Reading JSON-lines files with errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


def iter_json_objects(path: Path, error: type[ValueError]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Yield ``(where, line_number, object)`` for every non-blank line; ``where`` is ``file:line``."""
    with path.open("r", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise error(f"{where}: expected a JSON object, got {type(obj).__name__}")
            yield where, line_number, obj
