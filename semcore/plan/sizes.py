"""Sizes the rules plan with, before any job runs: the images a source yields, the training steps and the
steps kept, and the batch and chunk sizes that jobs use and the memory model counts (defined here once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from semcore.plan import inputs
from semcore.plan.schema import ConfigError
from semcore.plan.settings import train_config

MNIST5K_IMAGES, MNIST5K_SIDE = 5000, 28  # the digits of data.source mnist5k (sources.mnist5k)
# Rows per Parquet row group of the φ and block-means files.
ROWS_PER_GROUP = 8192
# The probe reads features wider than PROBE_MAX_DIMS through their leading principal components, fitted on a
# random sample of PCA_FIT_ROWS train rows: logistic regression (lbfgs, float64) on 200,000 ImageNet pixel
# vectors of 12,288 values and 1,000 classes would need ~39 GB and days; 512 is φ's width in the paper's
# network, so pixels are probed at φ's dimension.
PROBE_MAX_DIMS, PCA_FIT_ROWS = 512, 20_000
# k-means: restarts on a sample of this many points per centroid; distances computed this many at a time.
POINTS_PER_CENTROID, DISTANCE_CHUNK = 256, 1 << 25
NEIGHBOUR_BATCH = 1024  # images per batch of the nearest-neighbour search in pixels


def source_images(data: dict, open_batches: bool = False) -> int | None:
    """The images the source yields at most (inputs below min_size are skipped), where that is known without
    decoding them (a folder's files are listed): None for ImageNet64, and a mixture with an ImageNet64 part
    of no max_images, unless open_batches (counting means opening its batches)."""
    return images_of(data["source"], data[data["source"]], open_batches)


def images_of(source: str, options: dict, open_batches: bool) -> int | None:
    """source_images of a source (or a mixture's part) and its options."""
    if source == "synthetic":
        return options["n_images"]
    if source == "mnist5k":
        return MNIST5K_IMAGES
    if source == "patches":
        return options["n_per_image"] * len(options["images"] or inputs.PHOTOGRAPHS)
    if source == "folder":
        return len(inputs.input_files(Path(options["path"])))
    if source == "mixture":
        counts = [part_images(part, open_batches) for part in options["parts"]]
        return None if None in counts else sum(counts)
    return sum(len(np.load(path)["labels"]) for path in options["paths"]) if open_batches else None


def part_images(part: dict, open_batches: bool) -> int | None:
    """The images a mixture's part yields at most: its source's, or its first max_images."""
    images, cap = images_of(part["source"], part, open_batches), part["max_images"]
    if cap is None:
        return images
    return cap if images is None else min(images, cap)


def training_images(manifest_path: str | Path) -> int:
    """Images written to the train split: what converts a schedule in epochs to steps."""
    manifest = pq.read_table(manifest_path, columns=["split", "status"]).to_pylist()
    return sum(row["split"] == "train" and row["status"] == "written" for row in manifest)


def final_step(config: dict, train_images: int) -> int | None:
    """The last training step: the trained network's; None with model.pretrained (no training)."""
    if config["model"]["pretrained"]:
        return None
    return train_config(config).in_steps(train_images).steps


def emergence_steps(config: dict, train_images: int) -> list[int]:
    """The snapshot steps the emergence analysis reads: emergence.steps, or every one train keeps; none
    with model.pretrained (it keeps step 0 alone)."""
    if config["model"]["pretrained"]:
        return []
    train = train_config(config).in_steps(train_images)
    kept, steps = train.snapshot_steps(), config["emergence"]["steps"]
    if steps is None:
        return kept
    missing = sorted(set(steps) - set(kept))
    if missing:
        raise ConfigError(f"emergence.steps: {missing} are not kept by training (train.snapshot_every "
                          f"{train.snapshot_every}, {train.steps} steps: {kept})")
    return sorted(set(steps))



def explorer_images(config: dict) -> int | None:
    """Images on the explorer's map: the first explorer.max_images of the clustered ones (None: all)."""
    limits = [n for n in (config["explorer"]["max_images"], config["cluster"]["max_images"]) if n]
    return min(limits) if limits else None


# Candidates beyond k that a chunk of the nearest-neighbour search offers, ranked again in float64.
CANDIDATE_MARGIN = 8


def neighbour_block(n: int, k: int, width: int) -> int:
    """Queries at a time in the explorer's neighbour search of n rows of `width` values: its distances to
    all rows (n floats each) and its candidates' rows in float64 (with their difference to the query,
    ~20 bytes a value) stay within DISTANCE_CHUNK floats."""
    return max(1, DISTANCE_CHUNK // max(n, 5 * (k + CANDIDATE_MARGIN) * width))
