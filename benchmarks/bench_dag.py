"""How fast Snakemake plans an ImageNet-size run: configs/imagenet64-cluster.yaml with ~1,000 shards.

Sharding 1.28M images is what `shard` does on a cluster; here its outputs are stood in for by empty
files with the right names (1,001 train + test shards, a trained model) and a manifest of the right
rows, so the dry run sees the DAG a real run sees after the checkpoint. Prints the wall time of `snakemake -n` and the job counts.
Usage: python benchmarks/bench_dag.py [--images 1281167]
"""

import argparse
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def imagenet_workdir(root: Path, images: int, names: tuple[str, ...] = ("imagenet64",)) -> tuple[Path, int]:
    """root/config.yaml (the ImageNet config over stand-in npz files) and, for each run name, the stand-in
    outputs of its `shard` and `train` under results/<name>/; returns (root, shards per run)."""
    config = yaml.safe_load((REPO / "configs" / "imagenet64-cluster.yaml").read_text())
    batches = [root / "npz" / f"train_data_batch_{i}.npz" for i in range(1, 11)]
    batches[0].parent.mkdir(parents=True, exist_ok=True)
    for path in batches:
        path.touch()
    config["data"]["imagenet64"]["paths"] = [str(p) for p in batches]
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    for name in names:
        shards = stand_in_run(root / "results" / name, config, images)
    return root, shards


def stand_in_run(results: Path, config: dict, images: int) -> int:
    (results / "shards").mkdir(parents=True)
    (results / "model").mkdir()
    per_shard, test_fraction = config["data"]["samples_per_shard"], config["data"]["test_fraction"]
    counts = {"train": math.ceil(images * (1 - test_fraction) / per_shard), "test": math.ceil(images * test_fraction / per_shard)}
    for split, n in counts.items():
        for i in range(n):
            (results / "shards" / f"{split}-{i:06d}.tar").touch()
    # The manifest's columns the planning reads: the split and status of each image (a schedule in epochs
    # becomes steps with the training images) and its label (the probe's classes).
    test = round(images * test_fraction)
    pd.DataFrame({"split": pd.Categorical(["train"] * (images - test) + ["test"] * test),
                  "status": pd.Categorical(["written"] * images),
                  "label": np.arange(images, dtype=np.int32) % 1000}).to_parquet(results / "manifest.parquet")
    (results / "model" / "model.pt").touch()
    (results / "model" / "snapshots").mkdir()
    return sum(counts.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1_281_167)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir, n_shards = imagenet_workdir(Path(tmp), args.images)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
                              "--cores", "8", "--dry-run", "--quiet", "rules"], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if out.returncode:
            sys.exit(out.stdout + out.stderr)
        jobs = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", out.stdout, re.M)}
        print(f"{args.images:,} images in {n_shards:,} shards: dry run {seconds:.1f} s, {jobs.pop('total')} jobs")
        print("  " + ", ".join(f"{rule} {n}" for rule, n in sorted(jobs.items(), key=lambda item: -item[1])))


if __name__ == "__main__":
    main()
