"""A study: several runs of the workflow in one DAG (rules/study.smk loads the workflow once per run as a
Snakemake module), and the analyses it sets side by side.

A run is a run config, from a config file with nested overrides, named; each is validated as a run alone
would be, and its errors name the run.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from snakemake.utils import validate as fill_defaults

from semcore.plan.checks import validated
from semcore.plan.schema import ConfigError, validate

STUDY_SCHEMA = Path(__file__).parent.parent / "study.schema.yaml"


def module_name(run: str) -> str:
    """The Snakemake module of a run; its rules are named `<module>_<rule>`."""
    return re.sub(r"\W", "_", run)


@dataclass(frozen=True)
class Run:
    name: str
    config: dict  # validated, its defaults filled in

    @property
    def module(self) -> str:
        return module_name(self.name)


# The analyses set side by side: each run's table (under results/<run>/) and the report category of the
# study's table and figure (the run's report's category of that analysis).
ANALYSES = {
    "findings": ("findings.parquet", "Findings"),
    "block_pr": ("stats/block_pr.parquet", "Sparsity"),
    "stability": ("stats/stability.parquet", "Stability"),
    "channel_pr": ("stats/channels.parquet", "Selectivity"),
    "semantic_scores": ("clusters/semantic_scores.parquet", "Semantics"),
    "block_semantics": ("stats/block_semantics.parquet", "Semantics"),
    "emergence": ("emergence/emergence.parquet", "Emergence"),
    "gist": ("gist/agreement.parquet", "Semantics"),
}


def merged(base: dict, overrides: dict) -> dict:
    """base with overrides merged in, mapping by mapping (a list or a value replaces the base's)."""
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        nested = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = merged(result[key], value) if nested else copy.deepcopy(value)
    return result


def read_config(path: str, key: str) -> dict:
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{key}: cannot read {path} ({error})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{key}: {path} is not a run config (a mapping)")
    config.pop("study", None)  # a study file may serve as a base: its own runs are not the run's
    return config


def study_runs(config: dict) -> list[Run]:
    """The study's runs, each config validated and completed; a ConfigError names the study key or the run."""
    validate(config, STUDY_SCHEMA)
    fill_defaults(config, str(STUDY_SCHEMA))
    study = config["study"]
    names = [run["name"] for run in study["runs"]]
    if len(set(names)) < len(names) or study["name"] in names:
        raise ConfigError(f"study.runs: run names must be unique and differ from study.name {study['name']!r}: "
                          f"{names}")
    modules = [module_name(name) for name in names]
    if len(set(modules)) < len(modules):
        raise ConfigError(f"study.runs: names that differ only in - and _ are one module's: {names}")
    return [study_run(run, study["base"], f"study.runs[{i}]") for i, run in enumerate(study["runs"])]


def study_run(run: dict, base: str, key: str) -> Run:
    source = run["config"] or base
    config = merged(read_config(source, f"{key}.config" if run["config"] else "study.base"), run["set"])
    config["name"] = run["name"]
    try:
        validated(config)
    except ConfigError as error:
        raise ConfigError(f"{key} ({run['name']}: {source} with its `set`): {error}") from None
    return Run(run["name"], config)
