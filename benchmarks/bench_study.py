"""How a study of ImageNet-size runs plans, and what a SLURM cluster is sent for it.

Default: the dry-run time of a study of --runs runs of configs/imagenet64-cluster.yaml (each its own
learning rate), over bench_dag's stand-in shards and model for every run (1,001 shards each: the DAG a real
study sees once its `shard` jobs have run), and its job counts.
--sbatch: configs/study-imagenet.yaml (the paper's recipe against the authors' imported model) over the same
stand-ins, with profiles/slurm and a stand-in sbatch (sbatch_lines.py): the dry run's jobs per run, then the
sbatch line of each run's train (the import, for the authors' model) and first φ job.
Usage: python benchmarks/bench_study.py [--runs 10] [--images 1281167] [--sbatch]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from semcore.plan.study import module_name

from bench_dag import REPO, imagenet_workdir
from sbatch_lines import first_phi_target, stand_in_cluster, submitted


def dry_run(workdir: Path, *args: str) -> tuple[float, dict[str, int]]:
    """(seconds, {rule: jobs}) of `snakemake --dry-run` of the study in workdir."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
                          "--configfile", str(workdir / "study.yaml"), "--cores", "8", "--dry-run", "--quiet", "rules",
                          *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode:
        sys.exit(out.stdout[-3000:] + out.stderr[-3000:])
    return seconds, {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", out.stdout, re.M)}


def per_run(jobs: dict[str, int], runs: list[str]) -> dict[str, int]:
    """Jobs of each run (its rules are named <run>_<rule>) and of the study's own rules."""
    counts = dict.fromkeys([*runs, "study"], 0)
    modules = sorted(((module_name(run) + "_", run) for run in runs), reverse=True)  # imagenet64_authors_ first
    for rule, n in jobs.items():
        if rule != "total":
            counts[next((run for prefix, run in modules if rule.startswith(prefix)), "study")] += n
    return counts


def ten_runs(root: Path, runs: int, images: int) -> None:
    names = tuple(f"imagenet64-{i}" for i in range(runs))
    workdir, shards = imagenet_workdir(root, images, names)
    study = {"study": {"name": "lr-study", "runs": [{"name": name, "set": {"train": {"lr": 1e-3 * (1 + i / 10)}}}
                                                    for i, name in enumerate(names)]}}
    (workdir / "study.yaml").write_text(yaml.safe_dump(study))
    seconds, jobs = dry_run(workdir)
    print(f"{runs} runs of {images:,} images ({shards:,} shards each): dry run {seconds:.1f} s, {jobs['total']:,} jobs")
    print("  " + ", ".join(f"{name} {n}" for name, n in per_run(jobs, list(names)).items()))


def imagenet_study(root: Path, images: int) -> None:
    study = yaml.safe_load((REPO / "configs" / "study-imagenet.yaml").read_text())
    runs = [run["name"] for run in study["study"]["runs"]]
    workdir, _ = imagenet_workdir(root / "work", images, tuple(runs))
    authors = workdir / "authors"  # the imported model's folder: a stand-in model.pt
    authors.mkdir()
    (authors / "model.pt").touch()
    # older than the stand-in outputs, as a real import's source is: else, written a clock tick after them,
    # it would make the import (train) rerun before the φ job asked for, and sbatch would show train
    os.utime(authors / "model.pt", (0, 0))
    study["study"]["base"] = "config.yaml"  # the ImageNet config over the stand-in npz files
    study["study"]["runs"][1]["set"]["model"]["pretrained"]["path"] = str(authors)
    (workdir / "study.yaml").write_text(yaml.safe_dump(study))
    profile, log, env = stand_in_cluster(root, gpus=4)
    seconds, jobs = dry_run(workdir, "--workflow-profile", str(profile))
    print(f"configs/study-imagenet.yaml on profiles/slurm: dry run {seconds:.1f} s, {jobs['total']:,} jobs")
    print("  " + ", ".join(f"{name} {n}" for name, n in per_run(jobs, runs).items()))
    study_args = ("--configfile", str(workdir / "study.yaml"))
    # φ first: a killed submission leaves its output marked incomplete, and train's is φ's input.
    jobs = [("phi", run, first_phi_target(workdir, f"results/{run}")) for run in runs]
    jobs += [("train", run, f"results/{run}/model/model.pt") for run in runs]
    for rule, run, target in jobs:
        job = f"{module_name(run)}_{rule}"
        print(f"{job}:\n  {submitted(workdir, profile, target, job, log, env, *study_args)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--images", type=int, default=1_281_167, help="images per run (ImageNet's training set)")
    parser.add_argument("--sbatch", action="store_true", help="configs/study-imagenet.yaml on profiles/slurm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.sbatch:
            imagenet_study(Path(tmp), args.images)
        else:
            ten_runs(Path(tmp), args.runs, args.images)


if __name__ == "__main__":
    main()
