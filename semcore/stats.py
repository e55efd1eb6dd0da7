"""Statistics of channel means: sparsity, stability across σ, channel selectivity, union of subspaces,
and selectivity for known generative factors. Inputs are plain arrays; every function is batched.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.linalg import subspace_angles
from scipy.stats import gaussian_kde
from skimage.filters import threshold_otsu
from sklearn.feature_selection import mutual_info_classif, mutual_info_regression


def participation_ratio(v: np.ndarray, axis: int = -1) -> np.ndarray:
    """PR(v) = (Σ v)² / (n Σ v²) along `axis`: 1/n for a one-hot v, 1 for a constant one, NaN for zeros."""
    v = np.asarray(v, dtype=np.float64)
    squares = (v**2).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return v.sum(axis=axis) ** 2 / (v.shape[axis] * squares)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [N, C] arrays (NaN where a row is zero)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def selectivity_threshold(channel_pr: np.ndarray) -> tuple[float, bool]:
    """The trough of the channel-PR distribution: the least dense point (Gaussian KDE) between its two
    highest modes; channels below it are selective. Returns (threshold, bimodal); a distribution with a
    single mode falls back to Otsu's threshold, with bimodal False."""
    values = channel_pr[np.isfinite(channel_pr)]
    grid = np.linspace(values.min(), values.max(), 512)
    density = gaussian_kde(values)(grid)
    peaks = np.flatnonzero((density[1:-1] > density[:-2]) & (density[1:-1] >= density[2:])) + 1
    if len(peaks) < 2:
        return float(threshold_otsu(values)), False
    low, high = sorted(peaks[np.argsort(density[peaks])[-2:]])
    return float(grid[low + np.argmin(density[low:high + 1])]), True


def active_channels(phi: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean [N, C]: channel c is active for image i when φ_ic > fraction · max_i φ_ic."""
    return phi > fraction * phi.max(axis=0, keepdims=True)


def effective_dimension(vectors: np.ndarray, energy: float) -> int:
    """The number of singular values of the [N, C] rows holding `energy` of their total squared norm:
    the dimension of the subspace (through the origin) they lie close to."""
    s2 = np.linalg.svd(vectors, compute_uv=False) ** 2
    return int(np.searchsorted(np.cumsum(s2) / s2.sum(), energy) + 1)


def participation_dimension(vectors: np.ndarray) -> float:
    """(Σ s²)² / Σ s⁴ over the singular values s of the [N, C] rows: a continuous effective dimension,
    1 for rows along one direction, k for rows spread evenly over k orthogonal ones."""
    s2 = np.linalg.svd(vectors, compute_uv=False) ** 2
    return float(s2.sum() ** 2 / (s2**2).sum())


def principal_subspace(vectors: np.ndarray, dim: int) -> np.ndarray:
    """An orthonormal basis [C, dim] of the best-fitting dim-dimensional subspace through the origin."""
    u, _, _ = np.linalg.svd(vectors.T, full_matrices=False)
    return u[:, :dim]


def principal_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Principal angles in degrees between the column spans of a and b, smallest first."""
    return np.sort(np.degrees(subspace_angles(a, b)))


def group_by_active_selective(phi: np.ndarray, selective: np.ndarray, fraction: float,
                              min_size: int) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Images grouped by their set of active selective channels: [(channels, image indices)], groups of at
    least min_size images with at least one active selective channel, largest first."""
    active = active_channels(phi, fraction)[:, selective]
    selective_ids = np.flatnonzero(selective)
    patterns, inverse = np.unique(active, axis=0, return_inverse=True)
    groups = []
    for p, pattern in enumerate(patterns):
        members = np.flatnonzero(inverse.ravel() == p)
        if pattern.any() and len(members) >= min_size:
            groups.append((tuple(int(c) for c in selective_ids[pattern]), members))
    return sorted(groups, key=lambda g: -len(g[1]))


def subspace_statistics(phi: np.ndarray, groups: list[np.ndarray], energy: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per group: size, effective dimension (`energy` of the squared singular values) and participation
    dimension; per pair of groups: the principal angles between their subspaces (smallest and mean)."""
    dims = [effective_dimension(phi[members], energy) for members in groups]
    bases = [principal_subspace(phi[members], d) for members, d in zip(groups, dims)]
    per_group = pd.DataFrame({"group": range(len(groups)), "size": [len(m) for m in groups], "dimension": dims,
                              "pr_dimension": [participation_dimension(phi[m]) for m in groups]})
    pairs = []
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            angles = principal_angles(bases[i], bases[j])
            pairs.append(dict(group_a=i, group_b=j, min_angle=angles[0], mean_angle=angles.mean()))
    return per_group, pd.DataFrame(pairs, columns=["group_a", "group_b", "min_angle", "mean_angle"])


def shuffled_groups(groups: list[np.ndarray], n_images: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random groups of the same sizes, disjoint as the real ones are: the baseline for subspace statistics."""
    order = rng.permutation(n_images)
    bounds = np.cumsum([0] + [len(m) for m in groups])
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def factor_mutual_information(phi: np.ndarray, factors: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Mutual information (nats) between each channel's activation and each factor: categorical factors
    (strings) by mutual_info_classif, numeric ones by mutual_info_regression, on the images where the
    factor is defined. Long format: factor, channel, mutual_information."""
    rows = []
    for name in factors.columns:
        values = factors[name]
        defined = values.notna().to_numpy()
        if defined.sum() < 10:
            continue
        x, y = phi[defined], values[defined]
        if pd.api.types.is_numeric_dtype(y):
            mi = mutual_info_regression(x, y.to_numpy(dtype=float), random_state=seed)
        else:
            mi = mutual_info_classif(x, pd.factorize(y)[0], random_state=seed)
        rows.append(pd.DataFrame({"factor": name, "channel": np.arange(phi.shape[1]), "mutual_information": mi}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["factor", "channel", "mutual_information"])


# Tables: the statistics above over the pipeline's outputs.

def block_pr_table(block_means: pd.DataFrame, sigma: float) -> pd.DataFrame:
    """Per image and block, the PR of the block's channel means at σ (paper fig. 1)."""
    rows = block_means[np.isclose(block_means.sigma, sigma)]
    pr = [participation_ratio(np.stack(group.means.to_numpy())) for _, group in rows.groupby("block", sort=False)]
    frames = [group[["key", "block"]].assign(pr=values) for (_, group), values in zip(rows.groupby("block", sort=False), pr)]
    return pd.concat(frames, ignore_index=True)


def stability_table(block_means: pd.DataFrame, sigma1: float) -> pd.DataFrame:
    """Per image, block and σ2: cosine similarity of ā(x_σ1) and ā(x_σ2) (paper fig. 2)."""
    frames = []
    for block, rows in block_means.groupby("block", sort=False):
        by_sigma = {s: group.set_index("key").means for s, group in rows.groupby("sigma")}
        reference = next(v for s, v in by_sigma.items() if np.isclose(s, sigma1))
        for sigma2, means in by_sigma.items():
            keys = reference.index.intersection(means.index)
            cos = cosine_similarity(np.stack(reference[keys].to_numpy()), np.stack(means[keys].to_numpy()))
            frames.append(pd.DataFrame({"key": keys, "block": block, "sigma": sigma2, "cosine": cos}))
    return pd.concat(frames, ignore_index=True)


def channel_table(phi: np.ndarray, active_fraction: float) -> tuple[pd.DataFrame, float, bool]:
    """Per channel: PR across images, mean, fraction of images where it is active, selective or not
    (paper fig. 3). Returns (table, threshold, bimodal)."""
    pr = participation_ratio(phi, axis=0)
    threshold, bimodal = selectivity_threshold(pr)
    table = pd.DataFrame({"channel": np.arange(phi.shape[1]), "pr": pr, "mean": phi.mean(axis=0),
                          "active_fraction": active_channels(phi, active_fraction).mean(axis=0),
                          "selective": pr < threshold})
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
