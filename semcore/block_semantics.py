"""Where the semantics live: the semantic scores of every block's ā at every σ, a block × σ map.

Each representation is one block's noise-averaged channel means ā (encoder, middle, decoder: the rows of
the block-means file, network order) at one σ, or, for reference, the pixels of the same images (σ = 0).
Of each, the images' vectors x [n, C] get two scores, the middle block's own (rules kmeans, probe):

- AMI: k-means (semcore.cluster.kmeans: k-means++, cluster.n_init restarts, Lloyd; on x/‖x‖ with
  cluster.normalize) against each target of semcore.scores.semantic_targets: the label, and on synthetic
  scenes each scene factor (numeric ones binned), by semcore.scores.cluster_scores. One k for every
  representation, so that the map compares representations, not numbers of clusters: stats.block_semantics_k,
  or the smallest of cluster.ks capped at a fifth of the images (clusters of 5 images on average at least:
  on a few hundred images, a k of 100 would score near-singletons).
- probe accuracy: the middle block's linear probe (semcore.scores.probe_features: standardised by its fit
  rows, their leading principal components past PROBE_MAX_DIMS; semcore.scores.fit_probe: an L2 logistic
  regression, cluster.probe_max_iter, cluster.seed) for the label and each categorical factor, as rule probe.
  The images are all test images, so there is no train split: stratified k-fold cross-validation, 5 folds
  (fewer when the smallest class has fewer images; classes of a single image are left out by
  semantic_targets), each fold's standardisation and projection fit on its own fit rows, so no held-out image
  informs its own prediction. The accuracy is pooled: the fraction of images predicted right when held out.

Memory holds one block's means (every σ) and the pixels; each (block, σ) is taken from them by one index.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.model_selection import StratifiedKFold

from semcore.cluster import kmeans, normalized
from semcore.scores import cluster_score_table, fit_probe, probe_features, semantic_targets
from semcore.stats import block_arrays

PIXELS = "pixels"  # the reference rows' block
PROBE_FOLDS = 5
IMAGES_PER_CLUSTER = 5  # on average at least, when k is chosen here


@dataclass(frozen=True)
class Settings:
    """The rule's params: stats.block_semantics_k (k), cluster.ks, the σ mapped, normalize, n_init, max_iter, tol, seed,
    probe_max_iter."""
    k: int | None
    ks: list[int]
    sigmas: list[float]
    normalize: bool = False
    n_init: int = 10
    max_iter: int = 300
    tol: float = 1e-4
    seed: int = 0
    probe_max_iter: int = 1000


def clusters_k(configured: int | None, ks: list[int], n_images: int) -> int:
    """k of every representation's k-means: the configured one, or the smallest of ks capped at
    n_images // IMAGES_PER_CLUSTER (at least 2)."""
    if configured is None:
        return max(2, min(min(ks), n_images // IMAGES_PER_CLUSTER))
    if configured > n_images:
        raise ValueError(f"stats.block_semantics_k: k={configured} is more than the {n_images} images of the "
                         "block means (stats.block_means_images)")
    return configured


def cross_validated_accuracy(x: np.ndarray, classes: np.ndarray, max_iter: int = 1000,
                             seed: int = 0) -> tuple[float, int]:
    """(pooled held-out accuracy, folds) of the probe on x [n, D] for classes [n] (0 … m − 1, each of ≥ 2
    images), by stratified k-fold cross-validation; each fold's features standardised (and projected) by
    its fit rows alone."""
    folds = int(min(PROBE_FOLDS, np.bincount(classes).min()))
    correct = 0
    for fit_rows, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, classes):
        fit = np.zeros(len(x), bool)
        fit[fit_rows] = True
        features = probe_features(x, fit, seed)
        probe = fit_probe(features[fit_rows], classes[fit_rows], max_iter, seed)
        correct += int((probe.predict(features[held_out]) == classes[held_out]).sum())
    return correct / len(x), folds


def representation_scores(x: np.ndarray, targets: dict[str, pd.Series], probed: list[str], k: int,
                          settings: Settings) -> pd.DataFrame:
    """One representation's rows (target, score, value, n_images, k, folds): the AMI of its k-means
    clusters against each target, the probe accuracy for each target in `probed`."""
    clustered = normalized(x) if settings.normalize else x
    clusters = kmeans(clustered, k, n_init=settings.n_init, max_iter=settings.max_iter, tol=settings.tol,
                      seed=settings.seed).labels
    ami = cluster_score_table(clusters, targets).query("metric == 'ami'")
    rows = [dict(target=target, score="ami", value=value, n_images=int(targets[target].notna().sum()), k=k)
            for target, value in zip(ami.target, ami.value)]
    for target in probed:
        defined = targets[target].notna().to_numpy()
        classes = pd.factorize(targets[target][defined])[0]
        if classes.max(initial=0) < 1:
            continue  # one class: nothing to learn
        accuracy, folds = cross_validated_accuracy(x[defined], classes, settings.probe_max_iter, settings.seed)
        rows.append(dict(target=target, score="probe_accuracy", value=accuracy, n_images=int(defined.sum()),
                         folds=folds))
    return pd.DataFrame(rows)


def rows_in_order(found: pd.Series, keys: pd.Index) -> np.ndarray:
    """Positions in `found` of each of `keys`, in keys' order; every key must be found."""
    positions = pd.Index(found).get_indexer(keys)
    if (positions < 0).any():
        raise ValueError(f"{(positions < 0).sum()} of the {len(keys)} images missing, e.g. {keys[positions < 0][0]}")
    return positions


def block_sigma_means(path: str, blocks: list[str], sigmas: list[float],
                      keys: pd.Index) -> Iterator[tuple[str, float, np.ndarray]]:
    """(block, σ, ā [n, C] of the images `keys`, in their order) of the block-means file at the σ of `sigmas`,
    block by block (one block's rows read at a time), σ ascending."""
    for block in blocks:
        table = pq.read_table(path, columns=["key", "sigma", "block", "means"],
                              filters=[("block", "=", block), ("sigma", "in", sigmas)])
        for _, rows, means in block_arrays(table):
            for sigma, at_sigma in rows.groupby("sigma", sort=True):
                yield block, float(sigma), means[at_sigma.index.to_numpy()[rows_in_order(at_sigma.key, keys)]]


def block_semantics_table(path: str, pixel_keys: pd.Series, pixels: np.ndarray, factors: pd.DataFrame,
                          settings: Settings) -> pd.DataFrame:
    """The scores of every (block, σ) of the block-means file at `path`, and of the pixels [n, D] of its
    images (keyed by pixel_keys) as block PIXELS, σ = 0. factors: the scene factors by key (none: no columns).
    Columns: block, block_index (network order; none for the pixels), sigma, target, score ("ami",
    "probe_accuracy"), value, n_images, k (of the AMI), folds (of the probe)."""
    blocks = pq.read_table(path, columns=["block"]).column("block").unique().to_pylist()  # network order
    images = pq.read_table(path, columns=["key", "label"], filters=[("block", "=", blocks[0])]).to_pandas()
    images = images.drop_duplicates("key")  # a row per σ
    keys = pd.Index(images.key)
    targets = semantic_targets(images.label.reset_index(drop=True), factors.reindex(keys).reset_index(drop=True))
    categorical = factors.select_dtypes(exclude="number").columns
    probed = [name for name in targets if name == "label" or name in categorical]
    k = clusters_k(settings.k, settings.ks, len(keys))
    frames = [representation_scores(pixels[rows_in_order(pixel_keys, keys)], targets, probed, k, settings)
              .assign(block=PIXELS, block_index=None, sigma=0.0)]
    for block, sigma, means in block_sigma_means(path, blocks, settings.sigmas, keys):
        frames.append(representation_scores(means, targets, probed, k, settings)
                      .assign(block=block, block_index=blocks.index(block), sigma=sigma))
    columns = ["block", "block_index", "sigma", "target", "score", "value", "n_images", "k", "folds"]
    table = pd.concat(frames, ignore_index=True).reindex(columns=columns)
    return table.astype({"block_index": "Int64", "n_images": "Int64", "k": "Int64", "folds": "Int64"})
