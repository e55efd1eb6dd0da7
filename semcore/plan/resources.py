"""Memory (mem_mb) and runtime of the rules, from the config and the number of images: plain functions, no
torch, no Snakemake, so the rules declare their resources with them and tests/test_memory.py checks the
memory, for configs/imagenet64-cluster.yaml, against peaks measured at two small sizes and extrapolated.

A job asks for base + copies × `held_bytes`: the bytes it holds at its peak as this code reads and
computes (its arrays, their temporary copies, Parquet's decoding buffers), counted from the config.
Buffers bounded by a chunk size (a Parquet row group, 1,024 images, a sample of rows) are counted as
such, so that a fit at small sizes, where they are as large as the data, extrapolates to full size.
"""

from __future__ import annotations

import math

from semcore.plan.sizes import (
    CANDIDATE_MARGIN,
    DISTANCE_CHUNK,
    NEIGHBOUR_BATCH,
    PCA_FIT_ROWS,
    POINTS_PER_CENTROID,
    PROBE_MAX_DIMS,
    ROWS_PER_GROUP,
    explorer_images,
    neighbour_block,
)

MB = 2**20
# Bytes of one row in pandas: a (key, split, label) row of an image; a manifest row (key, origin, label,
# shard, status…); an output row keyed by image (key, block, σ, value); a decoded image's metadata dict.
META_ROW, MANIFEST_ROW, OUTPUT_ROW, IMAGE_META = 100, 500, 150, 1000
# How many Parquet row groups' bytes decoding holds at once (measured reading φ: 8 MB of it in one row group
# peaks at +65 MB).
DECODING_GROUPS = 6

# Above the measured intercepts (~0.2–0.6 GB: Python, numpy, pandas, torch) and slopes (measured MB per
# MB held: 0.7–1.6, tests/test_memory.py), with a margin; the GPU rules' base also covers the CUDA
# libraries' host memory (~1–3 GB), which no CPU measurement sees. block_means' activations (on the CPU)
# are counted once per block output; the measured slope is ~4.5.
BASE_MB = {"block_means": 4000, "kmeans": 4000, "emergence_step": 4000}
DEFAULT_BASE_MB = 1000
COPIES = {rule: 1.5 for rule in ("sparsity", "stability", "block_semantics", "selectivity", "subspaces", "factors",
                                  "neighbours", "kmeans", "probe", "semantic_scores",
                                  "emergence_step", "neighbour_graph", "embedding", "explorer_data",
                                  "explorer")} | {"block_means": 6}


def feature_width(config: dict, features: str) -> int:
    """Values per image of a feature set: φ's channels, or the pixels."""
    data = config["data"]
    return data["channels"] * data["size"] ** 2 if features == "pixels" else config["model"]["channels"][-1]


def block_channels(config: dict) -> list[int]:
    """Channels of each block whose means block_means keeps: E1…En, M, Dn…D2."""
    channels = config["model"]["channels"]
    return channels + channels[1:-1]


def activation_bytes(config: dict) -> int:
    """float32 bytes of one image's block outputs at their resolution, encoder and decoder."""
    channels, size = config["model"]["channels"], config["data"]["size"]
    per_level = [c * (size // 2**level) ** 2 for level, c in enumerate(channels)]
    return 4 * (2 * sum(per_level[:-1]) + per_level[-1])


def decoding(rows: int, row_bytes: float) -> float:
    """Parquet's buffers while decoding rows of row_bytes each."""
    return DECODING_GROUPS * min(rows, ROWS_PER_GROUP) * row_bytes


def reading(config: dict, features: str, n: int) -> tuple[float, float]:
    """(peak, then held) bytes of reading n images' features. φ at one σ (semcore.phi.read_phi): the Arrow
    table and its contiguous copy, the key table, decoding buffers of a file's row group. Pixels
    (semcore.features.read_pixels): the batches and their concatenation, each image's metadata."""
    width = feature_width(config, features)
    held = n * (4 * width + META_ROW)
    if features == "pixels":
        return held + n * (4 * width + IMAGE_META), held
    file_rows = min(n, config["phi"]["shards_per_job"] * config["data"]["samples_per_shard"])
    return held + n * 4 * width + decoding(file_rows, 4 * width), held


def held_bytes(rule: str, config: dict, n_images: int, features: str = "phi", n_classes: int = 0,
               k: int = 0) -> float:
    """Bytes a job of `rule` holds at its peak. n_images: the images of the run (rows of the manifest);
    features, k: kmeans' and probe's feature set and number of clusters; n_classes: the labels (probe and
    semantic_scores)."""
    manifest = n_images * MANIFEST_ROW
    n = min(n_images, config["cluster"]["max_images"] or n_images)  # clustered, probed, searched
    blocks, block_images = block_channels(config), config["stats"]["block_means_images"]
    block_sigmas = len(set(config["phi"]["sigmas"]) | {config["stats"]["stability_sigma"]})
    block_row = 4 * sum(blocks) / len(blocks)  # a block-means row's list of means, on average
    if rule == "emergence_step":  # one snapshot's φ through k-means at the largest k, then the probe
        return max(held_bytes("kmeans", config, n_images, k=max(config["cluster"]["ks"])),
                   held_bytes("probe", config, n_images, n_classes=n_classes))
    if rule == "sparsity":  # every block's means at one σ (read through all the file's row groups), PR per image
        return (2 * block_images * 4 * sum(blocks) + decoding(block_images * block_sigmas * len(blocks), block_row)
                + block_images * len(blocks) * OUTPUT_ROW)
    if rule == "stability":  # one block's means at every σ; the cosines of every block
        rows = block_images * block_sigmas
        return 2 * rows * 4 * max(blocks) + decoding(rows * len(blocks), block_row) + rows * len(blocks) * OUTPUT_ROW
    if rule == "block_semantics":
        return block_semantics_bytes(config) + 2 * manifest  # the manifest, and its scene factors
    if rule in ("selectivity", "subspaces", "factors"):  # φ of every image at one σ, then a boolean per value
        peak, held = reading(config, "phi", n_images)
        return max(peak, held + n_images * feature_width(config, "phi")) + manifest
    if rule == "neighbours":  # one φ file's σ or one batch of images at a time, and every image's key
        file_rows = min(n, config["phi"]["shards_per_job"] * config["data"]["samples_per_shard"])
        batch = max(reading(config, "phi", file_rows)[0], reading(config, "pixels", min(n, NEIGHBOUR_BATCH))[0])
        return batch + n * META_ROW + manifest
    if rule in ("neighbour_graph", "embedding", "explorer_data", "explorer"):
        return explorer_bytes(rule, config, min(n, explorer_images(config) or n), features) + manifest
    peak, held = reading(config, features, n)
    width = feature_width(config, features)
    if rule == "kmeans":  # the restarts' sample (a copy when smaller than the data), norms, labels, distances
        sample = POINTS_PER_CENTROID * k
        extra = (sample * 4 * width if sample < n else 0) + n * 24 + min(n * k, DISTANCE_CHUNK) * 4
        if config["cluster"]["normalize"]:
            extra += n * 4 * width
        return max(peak, held + extra) + manifest
    if rule == "probe":  # PCA's sample and projection; the fit's float32 copies, float64 inputs, per-class arrays
        dims = min(width, PROBE_MAX_DIMS)
        pca = min(n, PCA_FIT_ROWS) * 4 * width + n * 4 * dims if width > PROBE_MAX_DIMS else 0
        fit = n * dims * (4 + 4 + 8) + 3 * n * n_classes * 8  # on the (projected) features
        return max(peak, held + pca, n * 4 * dims + fit) + manifest
    if rule == "semantic_scores":  # one clustering's assignments at a time, and contingency tables
        return n * OUTPUT_ROW + 3 * n_classes * max(config["cluster"]["ks"]) * 8 + manifest
    if rule == "block_means":  # host memory: the activations of a forward batch when it runs on the CPU
        if config["device"] != "cpu":
            return 0
        return config["phi"]["batch_images"] * config["phi"]["n_noise"] * activation_bytes(config)
    raise ValueError(f"no memory model for rule {rule!r}")


def explorer_bytes(rule: str, config: dict, n: int, features: str) -> float:
    """Bytes the explorer's rules hold for n mapped images (semcore.explorer). neighbour_graph: the features,
    a block of distances and its candidates' rows in float64 (sizes.neighbour_block); embedding: φ in float64 and t-SNE's 3 ×
    perplexity neighbours per image; explorer_data: φ, its quantised and active copies and the bundle
    three times (its arrays, their base64, the JSON); explorer: the bundle four times (the file, the parsed
    bundle, the JSON in the page, the page)."""
    peak, held = reading(config, features, n)
    width, explorer = feature_width(config, features), config["explorer"]
    if rule == "neighbour_graph":  # and the features centred: a copy
        block, candidates = neighbour_block(n, explorer["neighbours"], width), explorer["neighbours"] + CANDIDATE_MARGIN
        return max(peak, 2 * held + 2 * 4 * block * n + block * candidates * width * 20)
    if rule == "embedding":
        return max(peak, held + n * (8 * width + 3 * explorer["perplexity"] * 24))
    bundle = explorer_bundle_bytes(config, n)  # explorer_data and explorer
    return max(peak, held + 2 * n * width + 3 * bundle) if rule == "explorer_data" else 4 * bundle


def explorer_bundle_bytes(config: dict, n: int) -> float:
    """The bytes of a run's explorer bundle (and so of its page): per image, in base64, φ quantised to a
    byte a channel, each space's neighbours (rows and distances), the map's coordinates and colourings; its
    key and file name; its thumbnail (WebP at ~0.5 byte a pixel, measured on noisy 32 × 32 images)."""
    explorer = config["explorer"]
    packed = config["model"]["channels"][-1] + 3 * explorer["neighbours"] * 8 + 4 * (4 + len(config["cluster"]["ks"]) + 2)
    return n * (4 / 3 * packed + 200 + explorer["thumbnail"] ** 2 / 2)


def block_semantics_bytes(config: dict) -> float:
    """Bytes rule block_semantics holds beside the manifest: the images' pixels; one block's means at every σ
    (read as stability reads them) and the keys of one block's rows; at one (block, σ) or the pixels, the
    rows taken (and normalised) and the probe's fit on them, as rule probe's, with as many classes as the
    scores can keep at most (half the images: a class of one image is left out)."""
    blocks, images = block_channels(config), config["stats"]["block_means_images"]
    rows = images * len(set(config["phi"]["sigmas"]) | {config["stats"]["stability_sigma"]})
    block = (2 * rows * 4 * max(blocks) + decoding(rows * len(blocks), 4 * sum(blocks) / len(blocks))
             + rows * (META_ROW + OUTPUT_ROW))
    peak, pixels = reading(config, "pixels", images)
    width = max(max(blocks), feature_width(config, "pixels"))
    dims = min(width, PROBE_MAX_DIMS)
    pca = min(images, PCA_FIT_ROWS) * 4 * width if width > PROBE_MAX_DIMS else 0
    fit = images * (2 * 4 * width + dims * (4 + 4 + 8)) + pca + 3 * images * (images // 2) * 8
    return max(peak, pixels + block + fit)


def mem_mb(rule: str, config: dict, n_images: int, features: str = "phi", n_classes: int = 0, k: int = 0) -> int:
    """The memory a job of `rule` asks for, in MB."""
    held = held_bytes(rule, config, n_images, features, n_classes, k)
    return math.ceil(BASE_MB.get(rule, DEFAULT_BASE_MB) + COPIES[rule] * held / MB)


# Seconds of GPU per forward pass of one 64×64 image through the paper's encoder and middle block, with a
# ~3× margin (a 1,280-image shard at 20 σ × 20 draws, ~490k passes, is ~6–15 s of work): sizes φ's runtime.
PHI_SECONDS_PER_FORWARD = 1e-4


def phi_minutes(config: dict, images: int, sigmas: list[float]) -> int:
    """Minutes for a φ job of `images` images at these σ: its forward passes (images × draws, one draw at
    σ = 0) on a GPU, scaled by image area; at least 10 (start-up, reading the shards)."""
    forwards = images * sum(1 if sigma == 0 else config["phi"]["n_noise"] for sigma in sigmas)
    area = (config["data"]["size"] / 64) ** 2
    return max(10, math.ceil(forwards * area * PHI_SECONDS_PER_FORWARD / 60))


# Seconds of the probe's fit per image × feature × class, ~2e-8 measured on 2 busy CPU cores (1,000 images ×
# 512 features × 100 classes: 0.8 s a fold), with a 3× margin: sizes block_semantics' runtime.
PROBE_SECONDS_PER_UNIT = 6e-8


def block_semantics_minutes(config: dict, n_classes: int) -> int:
    """Minutes for block_semantics: a k-means and a 5-fold probe per target probed (the label; on the
    synthetic scenes also the background and foreground) for each block at each σ and the pixels; the
    probes' fits dominate (n_classes: the labels, 0 until the manifest is written); at least 10."""
    blocks, images = block_channels(config), config["stats"]["block_means_images"]
    representations = len(blocks) * len(config["stats"]["block_semantics_sigmas"] or config["phi"]["sigmas"]) + 1
    dims = min(PROBE_MAX_DIMS, max(max(blocks), feature_width(config, "pixels")))
    targets = 3 if config["data"]["source"] == "synthetic" else 1
    fits = targets * 5 * images * dims * max(n_classes, 2) * PROBE_SECONDS_PER_UNIT
    return max(10, math.ceil(representations * (fits + 10) / 60))  # + 10 s: the k-means, reading


def gist_mem_mb(config: dict, images: int) -> int:
    """Torch and the network, and `images` uint8 images held with their decoding (a margin of 3×)."""
    return 1500 + math.ceil(3 * images * config["data"]["size"] ** 2 * config["data"]["channels"] / 1e6)
