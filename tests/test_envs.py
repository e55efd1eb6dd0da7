"""The conda environments (envs/*.yaml, used with --software-deployment-method conda) agree with
pyproject.toml, and each holds every third-party package that the scripts of its rules import."""

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DEPENDENCIES = {canonicalize_name(r.name): r.specifier for r in map(Requirement, PROJECT["dependencies"])}
# conda-forge names that differ from PyPI's (pytorch-cpu: the CPU-only build of pytorch)
CONDA_TO_PYPI = {"pytorch": "torch", "pytorch-cpu": "torch", "matplotlib-base": "matplotlib"}


def env_packages(path: Path) -> tuple[str, dict[str, SpecifierSet]]:
    """(python's conda spec, {PyPI name: version bounds}) of an env's conda and pip dependencies."""
    python, packages = None, {}
    for dependency in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dependency, dict):
            for spec in dependency["pip"]:
                requirement = Requirement(spec)
                packages[canonicalize_name(requirement.name)] = requirement.specifier
            continue
        name, bounds = re.fullmatch(r"([\w.-]+)\s*(.*)", dependency).groups()
        if name == "python":
            python = bounds
        elif name != "pip":
            packages[canonicalize_name(CONDA_TO_PYPI.get(name, name))] = SpecifierSet(bounds)
    return python, packages


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the non-standard modules a file imports, following semcore's own modules."""
    found, seen, todo = set(), set(), [path]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                top, _, rest = name.partition(".")
                if top == "semcore":
                    module = REPO / "semcore" / f"{rest.split('.')[0]}.py"
                    todo += [module] if module.is_file() else []
                elif top not in sys.stdlib_module_names:
                    found.add(top)
    return found


installed_distributions = cache(packages_distributions)  # {module: [distribution]}; slow, so once


def distributions(modules: set[str]) -> set[str]:
    """The installed distributions providing the modules (a module not installed stands for itself)."""
    return {canonicalize_name(d) for m in modules for d in installed_distributions().get(m, [m])}


def rule_scripts_and_envs() -> list[tuple[str, Path, Path | None]]:
    """(rule, script, conda env or None) of every rule (or checkpoint) in rules/*.smk that runs a script."""
    found = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for name, body in re.findall(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^\S|\Z)", smk.read_text(), re.M | re.S):
            script = re.search(r"^\s+script:\s+\"([^\"]+)\"", body, re.M)
            conda = re.search(r"^\s+conda:\s+\"([^\"]+)\"", body, re.M)
            if script:
                found.append((name, (smk.parent / script[1]).resolve(),
                              (smk.parent / conda[1]).resolve() if conda else None))
    return found


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_versions_agree_with_pyproject(env):
    python, packages = env_packages(env)
    assert python and python.startswith("=") and Version(python[1:]) in SpecifierSet(PROJECT["requires-python"]), \
        f"{env.name}: python {python} (pin as python=X.Y) is not within requires-python {PROJECT['requires-python']}"
    for name, bounds in packages.items():
        assert name in DEPENDENCIES, f"{env.name}: {name} is not a dependency in pyproject.toml"
        assert bounds == DEPENDENCIES[name], f"{env.name}: {name} {bounds}, pyproject.toml: {DEPENDENCIES[name]}"


def test_every_imported_package_is_a_dependency():
    files = [*(REPO / "semcore").glob("*.py"), *(REPO / "workflow_scripts").glob("*.py")]
    missing = distributions(set().union(*map(third_party_imports, files))) - set(DEPENDENCIES)
    assert not missing, f"imported but not in pyproject.toml's dependencies: {sorted(missing)}"


def test_every_script_rule_has_an_env_with_what_it_imports():
    rules = rule_scripts_and_envs()
    assert {"shard", "train"} <= {name for name, _, _ in rules}
    for name, script, env in rules:
        assert env and env.is_file(), f"rule {name}: no conda env file (conda: \"../envs/….yaml\")"
        missing = distributions(third_party_imports(script)) - set(env_packages(env)[1])
        assert not missing, f"rule {name} imports {sorted(missing)}, which {env.name} lacks"
