"""Statistics of channel means: sparsity, stability across σ, channel selectivity, union of subspaces,
and selectivity for known generative factors. Inputs are plain arrays; every function is batched.

φ of every image (1.28M × 512 float32 for ImageNet: 2.6 GB) is never copied whole nor converted to
float64: sums run over chunks of rows in float64, subspaces come from C × C Gram matrices, and the
mutual information takes a few channels at a time.

Zeros (a dead channel, an image whose means are all zero, a whole φ of zeros) give defined values, never
an error: a statistic that is 0/0 on them is NaN, and the tables keep those rows so that the NaNs can
be counted (semcore.findings reports how many it leaves out of its means):
- PR of a zero vector: NaN (block_pr_table: the image's `pr`; channel_table: a dead channel's `pr`);
- cosine similarity with a zero vector: NaN (stability_table);
- a dead channel (zero on every image): `dead` True, `pr` NaN, `mean` 0, `active_fraction` 0, never
  selective; an image whose φ is zero activates no channel, so it belongs to no group of union_of_subspaces
  and lowers every channel's PR across images, as any image that activates nothing;
- selectivity threshold with fewer than two distinct live channel PRs (e.g. φ all zero): NaN, not bimodal,
  no channel selective;
- effective and participation dimension of rows that are all zero: 0; principal angles to their
  (zero-dimensional) subspace: none, NaN in the pairs table;
- mutual information of a constant channel (e.g. dead) with any factor: 0.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.linalg import subspace_angles
from scipy.stats import gaussian_kde
from skimage.filters import threshold_otsu
from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

# Elements per chunk of a float64 temporary (8 MB).
CHUNK_ELEMENTS = 1 << 20


def _row_chunks(v: np.ndarray) -> list[slice]:
    """Slices of the first axis, each of about CHUNK_ELEMENTS elements."""
    step = max(1, CHUNK_ELEMENTS // max(1, v[:1].size))
    return [slice(start, start + step) for start in range(0, len(v), step)]


def sums(v: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(Σ v, Σ v²) along `axis` in float64, a chunk at a time: no float64 copy of v."""
    v = np.moveaxis(np.asarray(v), axis, 0)
    total, squares = np.zeros(v.shape[1:]), np.zeros(v.shape[1:])
    for rows in _row_chunks(v):
        chunk = v[rows].astype(np.float64)
        total += chunk.sum(axis=0)
        squares += np.square(chunk, out=chunk).sum(axis=0)
    return total, squares


def _participation_ratio(total: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return total**2 / (n * squares)


def participation_ratio(v: np.ndarray, axis: int = -1) -> np.ndarray:
    """PR(v) = (Σ v)² / (n Σ v²) along `axis`: 1/n for a one-hot v, 1 for a constant one; NaN for a zero v
    (0/0: a zero vector has no sparsity)."""
    return _participation_ratio(*sums(v, axis), np.shape(v)[axis])


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [N, C] arrays (NaN where a row is zero)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def selectivity_threshold(channel_pr: np.ndarray) -> tuple[float, bool]:
    """The trough of the channel-PR distribution: the least dense point (Gaussian KDE) between its two
    highest modes; channels below it are selective. Returns (threshold, bimodal); a distribution with a
    single mode falls back to Otsu's threshold, with bimodal False. Dead channels (PR NaN) are left out;
    with fewer than two distinct PRs left there is nothing to split: (NaN, False), no channel below it."""
    values = channel_pr[np.isfinite(channel_pr)]
    if len(np.unique(values)) < 2:
        return float("nan"), False
    grid = np.linspace(values.min(), values.max(), 512)
    density = gaussian_kde(values)(grid)
    peaks = np.flatnonzero((density[1:-1] > density[:-2]) & (density[1:-1] >= density[2:])) + 1
    if len(peaks) < 2:
        return float(threshold_otsu(values)), False
    low, high = sorted(peaks[np.argsort(density[peaks])[-2:]])
    return float(grid[low + np.argmin(density[low:high + 1])]), True


def active_channels(phi: np.ndarray, fraction: float, channels: np.ndarray | None = None) -> np.ndarray:
    """Boolean [N, C]: channel c is active for image i when φ_ic > fraction · max_i φ_ic (never for a dead
    channel, nor on an image whose φ is zero); only the columns of the channels in the boolean mask
    `channels`, when given. Built a chunk of rows at a time."""
    columns = np.arange(phi.shape[1]) if channels is None else np.flatnonzero(channels)
    threshold = fraction * phi.max(axis=0)[columns]
    active = np.empty((len(phi), len(columns)), dtype=bool)
    for rows in _row_chunks(phi):
        active[rows] = phi[rows][:, columns] > threshold
    return active


def gram(vectors: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """VᵀV [C, C] in float64 of the given rows of V (all by default), a chunk of rows at a time. Its
    eigenvalues are the squared singular values of those rows, its eigenvectors their right singular
    vectors: the subspace statistics below need nothing else, and never copy the rows whole."""
    rows = np.arange(len(vectors)) if rows is None else rows
    g = np.zeros((vectors.shape[1], vectors.shape[1]))
    for chunk in _row_chunks(rows):
        part = vectors[rows[chunk]].astype(np.float64)
        g += part.T @ part
    return g


def spectrum(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(squared singular values, largest first; the matching right singular vectors as columns) from a Gram
    matrix; rounding can leave tiny negative eigenvalues, clipped to 0."""
    s2, vectors = np.linalg.eigh(g)
    return np.clip(s2[::-1], 0, None), vectors[:, ::-1]


# Rows that are all zero span {0}: both dimensions are 0 (their ratios would be 0/0).
def _effective_dimension(s2: np.ndarray, energy: float) -> int:
    total = s2.sum()
    return int(np.searchsorted(np.cumsum(s2) / total, energy) + 1) if total > 0 else 0


def _participation_dimension(s2: np.ndarray) -> float:
    total = s2.sum()
    return float(total**2 / (s2**2).sum()) if total > 0 else 0.0


def effective_dimension(vectors: np.ndarray, energy: float) -> int:
    """The number of singular values of the [N, C] rows holding `energy` of their total squared norm:
    the dimension of the subspace (through the origin) they lie close to; 0 for rows that are all zero."""
    return _effective_dimension(spectrum(gram(vectors))[0], energy)


def participation_dimension(vectors: np.ndarray) -> float:
    """(Σ s²)² / Σ s⁴ over the singular values s of the [N, C] rows: a continuous effective dimension,
    1 for rows along one direction, k for rows spread evenly over k orthogonal ones, 0 for zero rows."""
    return _participation_dimension(spectrum(gram(vectors))[0])


def principal_subspace(vectors: np.ndarray, dim: int) -> np.ndarray:
    """An orthonormal basis [C, dim] of the best-fitting dim-dimensional subspace through the origin."""
    return spectrum(gram(vectors))[1][:, :dim]


def principal_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Principal angles in degrees between the column spans of a and b, smallest first (none when either
    has no column)."""
    return np.sort(np.degrees(subspace_angles(a, b)))


def group_by_active_selective(phi: np.ndarray, selective: np.ndarray, fraction: float,
                              min_size: int) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Images grouped by their set of active selective channels: [(channels, image indices)], groups of at
    least min_size images with at least one active selective channel (so never an image whose φ is zero),
    largest first."""
    selective_ids = np.flatnonzero(selective)
    # Patterns packed 8 channels to a byte (same lexicographic order); members of every pattern from one sort.
    packed = np.packbits(active_channels(phi, fraction, selective), axis=1)
    patterns, inverse, counts = np.unique(packed, axis=0, return_inverse=True, return_counts=True)
    patterns = np.unpackbits(patterns, axis=1, count=len(selective_ids)).astype(bool)
    by_pattern = np.split(np.argsort(inverse.ravel(), kind="stable"), np.cumsum(counts)[:-1])
    groups = [(tuple(int(c) for c in selective_ids[pattern]), members)
              for pattern, members in zip(patterns, by_pattern) if pattern.any() and len(members) >= min_size]
    return sorted(groups, key=lambda g: -len(g[1]))


def subspace_statistics(phi: np.ndarray, groups: list[np.ndarray], energy: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per group: size, effective dimension (`energy` of the squared singular values) and participation
    dimension; per pair of groups: the principal angles between their subspaces (smallest and mean; NaN
    when a group's rows are all zero: {0} makes no angle)."""
    spectra = [spectrum(gram(phi, members)) for members in groups]
    dims = [_effective_dimension(s2, energy) for s2, _ in spectra]
    bases = [vectors[:, :d] for (_, vectors), d in zip(spectra, dims)]
    per_group = pd.DataFrame({"group": range(len(groups)), "size": [len(m) for m in groups], "dimension": dims,
                              "pr_dimension": [_participation_dimension(s2) for s2, _ in spectra]})
    pairs = []
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            angles = principal_angles(bases[i], bases[j])
            smallest, mean = (angles[0], angles.mean()) if len(angles) else (np.nan, np.nan)
            pairs.append(dict(group_a=i, group_b=j, min_angle=smallest, mean_angle=mean))
    return per_group, pd.DataFrame(pairs, columns=["group_a", "group_b", "min_angle", "mean_angle"])


def shuffled_groups(groups: list[np.ndarray], n_images: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random groups of the same sizes, disjoint as the real ones are: the baseline for subspace statistics."""
    order = rng.permutation(n_images)
    bounds = np.cumsum([0] + [len(m) for m in groups])
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _mutual_information(estimate, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """The estimate for each column of x; exactly 0 for a constant one (e.g. a dead channel), which carries
    no information: the estimator jitters its input, and would find a little (~0.003 nats)."""
    return np.where(np.ptp(x, axis=0) == 0, 0.0, estimate(x, y, random_state=seed))


def factor_mutual_information(phi: np.ndarray, factors: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Mutual information (nats) between each channel's activation and each factor: categorical factors
    (strings) by mutual_info_classif, numeric ones by mutual_info_regression, on the images where the
    factor is defined; 0 for a channel constant there (e.g. dead). Long format: factor, channel,
    mutual_information. scikit-learn scales a float64 copy of its input: it gets a few channels at a time
    (each channel's estimate is its own)."""
    rows = []
    for name in factors.columns:
        values = factors[name]
        defined = values.notna().to_numpy()
        if defined.sum() < 10:
            continue
        y = values[defined]
        if pd.api.types.is_numeric_dtype(y):
            estimate, y = mutual_info_regression, y.to_numpy(dtype=float)
        else:
            estimate, y = mutual_info_classif, pd.factorize(y)[0]
        step = max(1, CHUNK_ELEMENTS // len(y))
        mi = np.concatenate([_mutual_information(estimate, phi[defined, start:start + step], y, seed)
                             for start in range(0, phi.shape[1], step)])
        rows.append(pd.DataFrame({"factor": name, "channel": np.arange(phi.shape[1]), "mutual_information": mi}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["factor", "channel", "mutual_information"])


# Tables: the statistics above over the pipeline's outputs.

def block_arrays(block_means: pa.Table) -> Iterator[tuple[str, pd.DataFrame, np.ndarray]]:
    """Per block, in file order, one at a time: (block, its rows' key and σ, their means [rows, C] float32),
    the means taken from the Arrow column without a Python object per row (the block-means file of 5,000
    ImageNet images at 21 σ holds 630,000 rows)."""
    blocks = block_means.column("block")
    for block in pc.unique(blocks).to_pylist():  # in order of first appearance
        rows = block_means.filter(pc.equal(blocks, block))
        means = rows.column("means").combine_chunks().flatten().to_numpy()
        yield block, rows.select(["key", "sigma"]).to_pandas(), means.reshape(rows.num_rows, -1)


def block_pr_table(block_means: pa.Table, sigma: float) -> pd.DataFrame:
    """Per image and block, the PR of the block's channel means at σ (paper fig. 1); NaN where they are all
    zero (the row is kept: it counts as left out)."""
    at_sigma = block_means.filter(np.isclose(block_means.column("sigma").to_numpy(), sigma))
    return pd.concat([rows[["key"]].assign(block=block, pr=participation_ratio(means))
                      for block, rows, means in block_arrays(at_sigma)], ignore_index=True)


def stability_table(block_means: pa.Table, sigma1: float) -> pd.DataFrame:
    """Per image, block and σ2: cosine similarity of ā(x_σ1) and ā(x_σ2) (paper fig. 2); NaN where either
    is zero (the row is kept: it counts as left out)."""
    frames = []
    for block, rows, means in block_arrays(block_means):
        row_of = {s: pd.Series(group.index, index=group.key) for s, group in rows.groupby("sigma")}
        reference = next(v for s, v in row_of.items() if np.isclose(s, sigma1))
        for sigma2, other in row_of.items():
            keys = reference.index.intersection(other.index)
            cos = cosine_similarity(means[reference[keys].to_numpy()], means[other[keys].to_numpy()])
            frames.append(pd.DataFrame({"key": keys, "block": block, "sigma": sigma2, "cosine": cos}))
    return pd.concat(frames, ignore_index=True)


def channel_table(phi: np.ndarray, active_fraction: float) -> tuple[pd.DataFrame, float, bool]:
    """Per channel: PR across images, mean, fraction of images where it is active, dead (zero on every
    image: PR NaN) or not, selective or not (paper fig. 3; never a dead channel, nor any channel when the
    threshold is NaN). Returns (table, threshold, bimodal)."""
    total, squares = sums(phi, axis=0)
    pr = _participation_ratio(total, squares, len(phi))
    threshold, bimodal = selectivity_threshold(pr)
    table = pd.DataFrame({"channel": np.arange(phi.shape[1]), "pr": pr, "mean": total / len(phi),
                          "active_fraction": active_channels(phi, active_fraction).mean(axis=0),
                          "dead": squares == 0, "selective": pr < threshold})
    return table, threshold, bimodal


def union_of_subspaces(phi: np.ndarray, selective: np.ndarray, active_fraction: float, min_size: int,
                       energy: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Groups of images sharing active selective channels, their subspaces' dimensions and pairwise
    principal angles, beside the same statistics for random groups of the same sizes (paper fig. 5).
    Returns (groups: kind, group, channels, size, dimension; pairs: kind, group_a, group_b, angles)."""
    groups = group_by_active_selective(phi, selective, active_fraction, min_size)
    members = [m for _, m in groups]
    if len(members) < 2:  # nothing to compare: empty tables, said so in the figure
        return (pd.DataFrame(columns=["group", "size", "dimension", "pr_dimension", "channels", "kind"]),
                pd.DataFrame(columns=["group_a", "group_b", "min_angle", "mean_angle", "kind"]))
    real_groups, real_pairs = subspace_statistics(phi, members, energy)
    real_groups["channels"] = [" ".join(map(str, channels)) for channels, _ in groups]
    shuffled = shuffled_groups(members, len(phi), np.random.default_rng(seed))
    base_groups, base_pairs = subspace_statistics(phi, shuffled, energy)
    base_groups["channels"] = ""
    return (pd.concat([real_groups.assign(kind="active channels"), base_groups.assign(kind="shuffled")], ignore_index=True),
            pd.concat([real_pairs.assign(kind="active channels"), base_pairs.assign(kind="shuffled")], ignore_index=True))
