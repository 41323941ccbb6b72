"""No function of the product is longer than 80 lines (a nested function counts toward its parent).

Long factories become one small builder per asset; long procedures become named steps.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 80


def long_functions(limit: int = LIMIT) -> list[str]:
    found = []
    for package in ("steering_assets", "resources", "partitions", "demo"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    length = node.end_lineno - start + 1
                    if length > limit:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_longer_than_80_lines():
    found = long_functions()
    assert not found, f"functions over {LIMIT} lines:\n" + "\n".join(found)
