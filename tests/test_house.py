"""The package's shape, drawn from its imports (benchmarks/house.py): no circle, no arrow that runs back
up, no import hidden in a function, and the plan layer (what the rules import) free of torch and of the
numerical layer."""
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import house  # noqa: E402


@pytest.fixture(scope="module")
def drawn():
    return house.house()


def test_no_circle_no_upward_arrow_no_import_in_a_function(drawn):
    assert drawn["circles"] == []
    assert drawn["upward"] == []
    assert drawn["hidden_imports"] == []


def test_the_plan_layer_imports_nothing_outside_it(drawn):
    assert drawn["crossing"] == []
    assert {name for name, module in drawn["modules"].items() if module["plan"]} >= {
        "semcore.plan.schema", "semcore.plan.settings", "semcore.plan.checks", "semcore.plan.resources"}


def test_the_rules_import_only_the_plan_layer():
    imported = {line.split()[1] for path in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]
                for line in path.read_text().splitlines() if line.startswith(("from semcore", "import semcore"))}
    assert imported and all(house.in_plan(name) for name in imported), imported


def test_planning_imports_no_torch():
    """Every plan module loads without torch (or scikit-learn)."""
    code = ("import importlib, pkgutil, sys, semcore.plan as plan\n"
            "[importlib.import_module(f'semcore.plan.{m.name}') for m in pkgutil.iter_modules(plan.__path__)]\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_no_function_over_80_lines(drawn):
    assert drawn["long_functions"] == []
