"""The representations the semantic scores compare, read as one matrix per feature set (named as in
semcore.plan.names): φ of the trained or the untrained network at a σ, or the pixels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from semcore.phi import read_phi
from semcore.plan.names import parse_feature_set
from semcore.shards import read_batches


def read_pixels(shard_paths: list[str], limit: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The images of the shards as vectors in [0, 1]: (key, split, label table, [N, C·H·W] float32)."""
    metas, vectors = [], []
    for batch_metas, images in read_batches(sorted(shard_paths), 1024, limit):
        metas += batch_metas
        vectors.append(images.reshape(len(images), -1).numpy().astype(np.float32) / 255)
    return pd.DataFrame(metas)[["key", "split", "label"]], np.concatenate(vectors)


def read_features(name: str, paths: list[str], limit: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """(key, split, label table, features [N, D] float32): paths are φ files, or shards for "pixels".
    With a limit, the first `limit` images in shard order: the same images for every feature set."""
    kind, sigma = parse_feature_set(name)
    if kind == "pixels":
        return read_pixels(paths, limit)
    meta, phi = read_phi(paths, sigma)
    return meta[:limit], phi[:limit]
