"""The code a workflow script runs: the script and every semcore module it imports, transitively.

A rule declares it as its `code` input, so editing that code reruns the rule (Snakemake's own code
trigger sees the rule's text, not the modules its script imports).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

# Files a module reads when it runs (no import finds them): the explorer's page template, style and script.
MODULE_DATA = {Path("semcore/explorer_page.py"): Path("semcore/web")}


@functools.cache
def semcore_imports(path: Path, root: Path) -> tuple[Path, ...]:
    """The files of the semcore modules a Python file imports directly, and of the packages holding them
    (importing semcore.plan.names runs semcore/__init__.py and semcore/plan/__init__.py first)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "semcore":
                for end in range(1, len(parts) + 1):
                    module = Path(root, *parts[:end])
                    found += [p for p in (module.with_suffix(".py"), module / "__init__.py") if p.is_file()]
    return tuple(found)


def script_code(root: str | Path, script: str) -> list[str]:
    """workflow_scripts/<script>.py and every semcore file it imports, transitively, under `root`, with the
    files those modules read (MODULE_DATA)."""
    root = Path(root)
    todo, seen = [root / "workflow_scripts" / f"{script}.py"], set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += semcore_imports(path, root)
    for module, folder in MODULE_DATA.items():
        if root / module in seen:
            seen.update(path for path in (root / folder).iterdir() if path.is_file())
    return sorted(str(p) for p in seen)
