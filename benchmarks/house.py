"""The house drawn from its imports: semcore's modules on floors, each above everything it imports.

    python benchmarks/house.py            # floors, circles, upward arrows, the longest functions
    python benchmarks/house.py --json     # the same as one JSON object (tests/test_house.py reads it)

A module's floor is one above the highest floor it imports (a module importing no other semcore module is
on floor 1). Imports in a function body count too, and are listed (of semcore modules and of torch): they
hide an arrow from a reader of the module's head. An arrow is *upward* when it points to a module on the
importer's floor or above, which only a circle, or an import in a function that the floors leave out, can
do. Circles are the strongly connected components of all the arrows. The boundary: semcore.plan, the
torch-free layer the rules import, must import nothing of semcore outside it ("crossing").
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "semcore"
PLAN = "semcore.plan"
LONG_FUNCTION = 80  # lines: over this a function needs a reason


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(semcore module, whether the import is in a function body) for each import of a semcore module."""
    tree = ast.parse(path.read_text(), str(path))
    in_function = {id(node) for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for node in ast.walk(function) if node is not function}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        targets = {name for name in names if name in known or name.split(".")[0] == "torch"}
        targets = {"torch" if name.split(".")[0] == "torch" else name for name in targets}
        targets = {t for t in targets if not any(o != t and o.startswith(t + ".") for o in targets)}
        found += [(target, id(node) in in_function) for target in sorted(targets) if target != "semcore"]
    return sorted(set(found))


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the circles (components of more than one module, or a module importing itself)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return components


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each module's floor, from its imports at the module's head (a circle's members share one floor)."""
    floor: dict[str, int] = {}

    def place(node, visiting):
        if node in floor:
            return floor[node]
        below = [place(other, visiting | {node}) for other in graph[node] if other not in visiting | {node}]
        floor[node] = 1 + max(below, default=0)
        return floor[node]

    for node in graph:
        place(node, frozenset())
    return floor


def long_functions(paths: dict[str, Path], over: int) -> list[tuple[int, str]]:
    found = []
    for name, path in paths.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
    return sorted((item for item in found if item[0] > over), reverse=True)


def in_plan(name: str) -> bool:
    return name == PLAN or name.startswith(PLAN + ".")


def house() -> dict:
    paths = modules()
    arrows = {name: imports(path, set(paths)) for name, path in paths.items()}
    head = {name: {t for t, hidden in found if not hidden and t in paths} for name, found in arrows.items()}
    every = {name: {t for t, _ in found if t in paths} for name, found in arrows.items()}
    floor = floors(head)
    return {
        "files": len(paths),
        "lines": sum(len(path.read_text().splitlines()) for path in paths.values()),
        "floors": max(floor.values()),
        "modules": {name: {"floor": floor[name], "lines": len(path.read_text().splitlines()),
                           "plan": in_plan(name), "imports": sorted(every[name])} for name, path in paths.items()},
        "circles": strongly_connected(every),
        "upward": sorted(f"{name} → {target}" for name, targets in every.items() for target in targets
                         if floor[target] >= floor[name]),
        "crossing": sorted(f"{name} → {target}" for name, found in arrows.items() if in_plan(name)
                           for target, _ in found if not in_plan(target)),
        "hidden_imports": sorted(f"{name} → {target}" for name, found in arrows.items()
                                 for target, hidden in found if hidden),
        "long_functions": [f"{lines} {name}" for lines, name in long_functions(paths, LONG_FUNCTION)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    drawn = house()
    if parser.parse_args().json:
        print(json.dumps(drawn, indent=1, ensure_ascii=False))
        return
    print(f"{drawn['files']} files, {drawn['lines']} lines, on {drawn['floors']} floors "
          f"(the plan layer's modules marked *)")
    for level in range(drawn["floors"], 0, -1):
        names = [f"{'*' * module['plan']}{name.removeprefix('semcore.')} ({module['lines']})"
                 for name, module in drawn["modules"].items() if module["floor"] == level]
        print(f"  {level:2d}: {', '.join(names)}")
    for title, key in (("circles", "circles"), ("upward arrows", "upward"),
                       ("plan → outside the plan layer", "crossing"), ("imports in functions", "hidden_imports"),
                       (f"functions over {LONG_FUNCTION} lines", "long_functions")):
        items = [" → ".join(item) if isinstance(item, list) else item for item in drawn[key]]
        print(f"{title}: {len(items)}" + "".join(f"\n  {item}" for item in items))


if __name__ == "__main__":
    main()
