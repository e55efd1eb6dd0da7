import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# A config small enough for seconds of CPU: 16×16 scenes, a two-level UNet, a few dozen steps.
TINY_CONFIG = {
    "name": "tiny",
    "data": {"source": "synthetic", "size": 16, "channels": 3, "test_fraction": 0.2,
             "samples_per_shard": 100, "synthetic": {"n_images": 240}},
    "model": {"channels": [8, 16, 32], "enc_convs": [2, 2], "mid_convs": 2, "dec_convs": [2, 2]},
    "train": {"steps": 30, "batch_size": 16, "log_every": 5, "eval_every": 10, "eval_images": 32,
              "checkpoint_every": 10, "snapshot_every": 10, "shuffle_buffer": 64},
    "phi": {"sigmas": [0.0, 0.1, 0.5], "n_noise": 2, "batch_images": 16},
    "stats": {"block_means_images": 24, "min_group_size": 3, "montage_images": 3},
    "cluster": {"sigmas": [0.1], "ks": [4], "n_init": 2, "montage_clusters": 3, "montage_members": 3, "queries": 2,
                "neighbours": 3, "probe_max_iter": 200},
    "emergence": {"steps": [0, 10, 30]},  # training keeps 0, 10, 20, 30
    "gist": {"max_steps": 200},
    "sample": {"targets": 3, "samples_per_target": 2, "targets_per_job": 2, "n_noise": 2,
               "schedule": {"sigma_max": 0.5, "sigma_min": 0.08, "steps": 3}, "matching": {"max_iter": 3},
               "ascent": {"sigma_0": 0.5, "sigma_final": 0.1, "h0": 0.3, "beta": 0.5, "max_steps": 20},
               "unconditional": "ascent"},
}


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


# What the workflow is made of: a copy of these is a whole workflow.
WORKFLOW_FILES = ["Snakefile", "config.yaml", "rules", "workflow_scripts", "semcore", "envs", "profiles",
                  "report"]


def copy_workflow(workdir: Path) -> Path:
    """The workflow copied into workdir/workflow: tests that edit its code edit the copy, never the checkout."""
    copy = workdir / "workflow"
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            copy.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def snakefile(workdir: Path) -> Path:
    """The workflow a workdir runs: its own copy when it has one, else the checkout's."""
    copy = workdir / "workflow" / "Snakefile"
    return copy if copy.exists() else REPO / "Snakefile"


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real workflow on workdir/config.yaml, as a user would from that directory."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile(workdir)), "--directory", str(workdir),
           "--cores", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """{rule: job count} of a dry run; empty when nothing is to be done."""
    result = snakemake(workdir, "--dry-run", *args)
    out = result.stdout + result.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M) if rule != "total"}


@pytest.fixture
def tiny_config():
    return yaml.safe_load(yaml.safe_dump(TINY_CONFIG))  # a deep copy each test may edit


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One complete tiny run, of its own copy of the workflow, shared by the tests that read its outputs
    (tests that edit it restore it)."""
    workdir = tmp_path_factory.mktemp("workflow")
    copy_workflow(workdir)
    write_config(workdir, TINY_CONFIG)
    snakemake(workdir)
    return workdir


def skip_loudly(message: str, opt_out: str | None = None):
    """Skip a test that this machine cannot run, saying so; where CI is set (there it must run), fail
    instead, unless the environment variable `opt_out` is 0."""
    if os.environ.get("CI") and not (opt_out and os.environ.get(opt_out) == "0"):
        pytest.fail(message)
    warnings.warn(message)
    print(f"\n*** {message} ***", file=sys.stderr)
    pytest.skip(message)


def debian_packages(packages: list[str], present, what: str) -> None:
    """Installs Debian's `packages` with apt-get unless present() already holds (root and apt-get needed;
    cached packages first, then with fresh package lists); where they cannot be installed, `what` is
    skipped loudly."""
    if present():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        skip_loudly(f"{what} NOT TESTED: {' '.join(packages)} not installed, and apt-get cannot install them here "
                    "(not root, or no apt-get)")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    for steps in ([install], [["apt-get", "update", "-q"], install]):
        if all(subprocess.run(step, capture_output=True, env=env, timeout=900).returncode == 0 for step in steps):
            break
    if not present():
        skip_loudly(f"{what} NOT TESTED: `apt-get install {' '.join(packages)}` failed")
