"""The representations compared by the semantic scores, each named by a string used in paths:
"phi-s0.1" (the trained network's φ at σ = 0.1), "untrained-s0.1" (φ of the same architecture at its
initial weights: what training added), and "pixels" (the raw image as a vector)."""

from __future__ import annotations

import numpy as np
import pandas as pd

KINDS = ("phi", "untrained", "pixels")


def feature_set_names(sigmas: list[float]) -> list[str]:
    return [f"{kind}-s{sigma:g}" for kind in KINDS[:2] for sigma in sigmas] + ["pixels"]


def parse(name: str) -> tuple[str, float | None]:
    """"phi-s0.1" → ("phi", 0.1); "pixels" → ("pixels", None)."""
    kind, _, sigma = name.partition("-s")
    if kind not in KINDS or (kind == "pixels") != (sigma == ""):
        raise ValueError(f"unknown feature set {name!r}: expected one of {KINDS}, with -s<σ> for φ")
    return kind, float(sigma) if sigma else None


def read_pixels(shard_paths: list[str], limit: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The images of the shards as vectors in [0, 1]: (key, split, label table, [N, C·H·W] float32)."""
    from semcore.shards import read_batches  # here, not above: the workflow plans with the names alone, without torch

    metas, vectors = [], []
    for batch_metas, images in read_batches(sorted(shard_paths), 1024, limit):
        metas += batch_metas
        vectors.append(images.reshape(len(images), -1).numpy().astype(np.float32) / 255)
    return pd.DataFrame(metas)[["key", "split", "label"]], np.concatenate(vectors)


def read_features(name: str, paths: list[str], limit: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """(key, split, label table, features [N, D] float32): paths are φ files, or shards for "pixels".
    With a limit, the first `limit` images in shard order: the same images for every feature set."""
    from semcore.phi import read_phi  # as in read_pixels

    kind, sigma = parse(name)
    if kind == "pixels":
        return read_pixels(paths, limit)
    meta, phi = read_phi(paths, sigma)
    return meta[:limit], phi[:limit]
