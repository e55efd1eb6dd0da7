"""Union of subspaces (paper fig. 5), tested on held-out images: do images sharing active selective
channels lie closer to the subspace of their own group than to the other groups'?

Measuring a group's dimension on the images that formed it is circular: the group was formed from the
very channels whose subspace is measured, so it is lower-dimensional by construction. The test here
removes that in three ways, each needed (measured on isotropic φ ≥ 0, which has no group structure):

- held out: each group (images sharing a pattern of active selective channels, `group_by_active_selective`)
  is split at random into halves; its subspace (through the origin) is fitted on the fit half alone, with
  the dimension holding `energy` of the fit half's squared singular values, and scored on the other half;
- other channels: subspaces are fitted and residuals measured on the channels that do not define the
  groups (all but the selective ones). A group's images share which selective channels are above the
  activity threshold and which are below it, by definition, so on those channels any image is nearer its
  own group's subspace whatever the rest of φ does: on all channels the real groups of isotropic φ with 4
  selective channels of 16 (64) come out at a ratio of 0.38 (0.82), not 1;
- every subspace compared with itself: a subspace fitted on more images (a larger group's) or with more
  dimensions leaves every image a smaller residual, and a plain mean over the other groups' subspaces
  would credit the large groups' held-out images with it: random groups of unequal sizes came out at
  0.72–0.97. The other groups' residuals are weighted by their sizes instead (`own_and_other_residuals`),
  so that the mean own residual is Σ_g h_g · (g's held-out images on P_g) and the mean other residual
  Σ_g h_g · (the other groups' held-out images on P_g), over H held-out images.

Each held-out image v of group g is scored by its relative residual on a subspace P (v restricted to the
measured channels),

    r_P(v) = ‖v − P v‖² / ‖v‖²   (0: v lies in P; 1: v is orthogonal to it),

on its own group's subspace (`own_residual`) and on the other groups' (`other_residual`). The baseline is
the same procedure on random groups: the same images partitioned at random into disjoint groups of the
same sizes, whose ratio mean(own) / mean(other) is 1 in expectation (over 20 draws of each synthetic
case of tests/test_subspaces.py: means 1.000–1.009, standard deviations 0.006–0.028). The claim holds
where the real groups' ratio is below 1 and below the random groups' (semcore.findings reads both from
the held-out table).

Descriptive statistics are kept beside it, measured on all channels of all members (circular, as in the
paper's figure): per group its size, effective and participation dimension, and the fit size and fitted
dimension of the held-out test; per pair of groups the principal angles between their subspaces.

Zeros: an image whose φ is zero activates no channel, so it belongs to no group (nor to a random group:
those are drawn among the grouped images) and is never scored; a held-out image whose measured channels
are all zero has no residual (NaN in both columns: 0/0), and a fit half whose measured channels are all
zero fits a zero-dimensional subspace (a residual of 1 on it). Rows that are all zero have effective and
participation dimension 0, and no principal angle (NaN in the pairs table). With fewer than two groups
(e.g. no selective channel: nothing to group by) every table is empty, with its columns, and the claim is
undecided. Everything is batched: subspaces come from C × C Gram matrices (semcore.stats.gram, a chunk of
rows at a time) or, for a fit half of few images, from their SVD; the held-out images are projected on
every subspace at once by one matrix product, a chunk of rows at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from semcore.stats import (
    CHUNK_ELEMENTS,
    _effective_dimension,
    _participation_dimension,
    active_channels,
    gram,
    principal_angles,
    spectrum,
)

GROUPS, RANDOM = "active channels", "random"  # the `kind` of every table: real groups, their baseline
GROUP_COLUMNS = ["group", "size", "dimension", "pr_dimension", "fit_size", "fit_dimension", "channels", "kind"]
PAIR_COLUMNS = ["group_a", "group_b", "min_angle", "mean_angle", "kind"]
HELDOUT_COLUMNS = ["kind", "group", "key", "own_residual", "other_residual"]


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
    when a group's rows are all zero: {0} makes no angle). Descriptive: measured on all channels of the
    groups' own members (`heldout_residuals` is the test)."""
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


def random_groups(groups: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The images of the groups partitioned at random into disjoint groups of the same sizes: the baseline
    (the same images, only the grouping differs)."""
    order = rng.permutation(np.concatenate(groups)) if groups else np.array([], dtype=int)
    bounds = np.cumsum([0] + [len(m) for m in groups])
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def split_fit_heldout(groups: list[np.ndarray], rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each group's members split at random into (fit, held out): ⌈n/2⌉ and ⌊n/2⌋ of its n images."""
    return [(shuffled[:len(shuffled) - len(shuffled) // 2], shuffled[len(shuffled) - len(shuffled) // 2:])
            for shuffled in (rng.permutation(members) for members in groups)]


def fit_subspaces(phi: np.ndarray, groups: list[np.ndarray], energy: float,
                  channels: np.ndarray | None = None) -> list[np.ndarray]:
    """Per group, an orthonormal basis [C, d] of the subspace (through the origin) its rows lie close to,
    d their effective dimension at `energy` (0 columns for rows that are all zero); on the channels of the
    boolean mask `channels` only, when given (the basis is zero on the others). A few rows (a fit part of
    the held-out test) are decomposed directly, many through their C × C Gram matrix."""
    mask = np.ones(phi.shape[1], bool) if channels is None else np.asarray(channels, bool)
    bases = []
    for members in groups:
        if len(members) * phi.shape[1] <= CHUNK_ELEMENTS:  # a small copy: an SVD of the rows is far cheaper
            _, s, vt = np.linalg.svd(phi[members].astype(np.float64) * mask, full_matrices=False)
            s2, vectors = s**2, vt.T
        else:
            s2, vectors = spectrum(gram(phi, members) * np.outer(mask, mask))  # the Gram of the masked rows
        d = _effective_dimension(s2, energy)
        bases.append(vectors[:, :d] * mask[:, None])  # exactly zero off the mask (rounding)
    return bases


def own_and_other_residuals(phi: np.ndarray, rows: np.ndarray, group: np.ndarray, bases: list[np.ndarray],
                             channels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Relative residuals r_P(v) = ‖v − P v‖² / ‖v‖² of each row v (its channels in the boolean mask
    `channels`, when given) on subspaces P_g (orthonormal bases, zero off the mask), g = 0 … G − 1, row i
    held out of group[i]: (own: on P_group[i]; other: Σ_{g ≠ group[i]} w_g r_P_g(v), w_g = h_g / (H − h_g),
    h_g the rows of group g, H all rows). With groups of equal sizes w_g = 1 / (G − 1): other is the mean
    over the other subspaces. In general the weights make Σ_i own_i = Σ_g h_g · (mean residual on P_g of
    the rows of g) and Σ_i other_i = Σ_g h_g · (mean residual on P_g of the rows of the other groups): the
    ratio of the two means compares every subspace with itself, so a subspace fitted better than another
    (on more images, or with more dimensions) favours no group. ‖v‖² − ‖Bᵀv‖² from one product with all
    bases side by side, a chunk of rows at a time (no [rows, groups] matrix kept). NaN for a zero row;
    each residual clipped to [0, 1] (rounding); other's weights sum to about 1, exactly 1 for groups of
    equal sizes, so it can pass 1 a little."""
    mask = np.ones(phi.shape[1], bool) if channels is None else np.asarray(channels, bool)
    dims = np.array([b.shape[1] for b in bases])
    stacked = np.concatenate(bases, axis=1)
    starts, nonempty = np.cumsum(dims) - dims, dims > 0  # each basis' columns in `stacked`
    held = np.bincount(group, minlength=len(bases))
    weights = held / np.maximum(len(rows) - held, 1)  # (a group of all rows is no row's other group)
    own, other = np.empty(len(rows)), np.empty(len(rows))
    step = max(1, CHUNK_ELEMENTS // max(phi.shape[1], stacked.shape[1], len(bases)))
    for start in range(0, len(rows), step):
        chunk = slice(start, start + step)
        v = phi[rows[chunk]].astype(np.float64) * mask
        norms = np.einsum("ij,ij->i", v, v)[:, None]
        projected = np.zeros((len(v), len(bases)))  # ‖Bᵀv‖² per basis: 0 on a zero-dimensional one
        if nonempty.any():
            projected[:, nonempty] = np.add.reduceat(np.square(v @ stacked), starts[nonempty], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            residuals = np.clip((norms - projected) / norms, 0, 1)
        own[chunk] = residuals[np.arange(len(v)), group[chunk]]
        residuals[np.arange(len(v)), group[chunk]] = 0  # its own group's term left out
        other[chunk] = residuals @ weights
    return own, other


def heldout_residuals(phi: np.ndarray, groups: list[np.ndarray], energy: float, rng: np.random.Generator,
                      channels: np.ndarray | None = None,
                      keys: np.ndarray | None = None) -> tuple[pd.DataFrame, list[int], list[int]]:
    """The test of at least two groups: each split into fit and held-out halves (`split_fit_heldout`), its
    subspace fitted on the fit half (`fit_subspaces`, on the boolean mask `channels`); per held-out image:
    group, key (keys[i], or the row index i), own_residual (on its group's subspace) and other_residual
    (on the other groups', `own_and_other_residuals`), both on `channels`. Returns (that table, the fit
    sizes, the fitted dimensions)."""
    parts = split_fit_heldout(groups, rng)
    bases = fit_subspaces(phi, [fit for fit, _ in parts], energy, channels)
    held = np.concatenate([h for _, h in parts]).astype(int)
    group = np.repeat(np.arange(len(groups)), [len(h) for _, h in parts])
    own, other = own_and_other_residuals(phi, held, group, bases, channels)
    table = pd.DataFrame({"group": group, "key": held if keys is None else np.asarray(keys)[held],
                          "own_residual": own, "other_residual": other})
    return table, [len(fit) for fit, _ in parts], [b.shape[1] for b in bases]


def union_of_subspaces(phi: np.ndarray, selective: np.ndarray, active_fraction: float, min_size: int,
                       energy: float, seed: int = 0,
                       keys: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Groups of images sharing active selective channels, against random groups of the same sizes made of
    the same images (paper fig. 5). Returns (groups: GROUP_COLUMNS, descriptive; pairs: PAIR_COLUMNS,
    principal angles; held-out: HELDOUT_COLUMNS, one row per held-out image, residuals on the channels
    that are not selective: the test of the claim), each with `kind` GROUPS or RANDOM. Fewer than two
    groups: three empty tables, with their columns (nothing to compare: the claim is undecided)."""
    grouped = group_by_active_selective(phi, selective, active_fraction, min_size)
    if len(grouped) < 2:
        return tuple(pd.DataFrame(columns=columns) for columns in (GROUP_COLUMNS, PAIR_COLUMNS, HELDOUT_COLUMNS))
    members = [m for _, m in grouped]
    split_rng, random_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    baseline = random_groups(members, random_rng)
    measured = ~np.asarray(selective, bool)
    tables = {name: [] for name in ("groups", "pairs", "heldout")}
    for kind, groups, channels in ((GROUPS, members, [" ".join(map(str, c)) for c, _ in grouped]),
                                   (RANDOM, baseline, [""] * len(baseline))):
        per_group, pairs = subspace_statistics(phi, groups, energy)
        heldout, fit_sizes, fit_dims = heldout_residuals(phi, groups, energy, split_rng, measured, keys)
        tables["groups"].append(per_group.assign(fit_size=fit_sizes, fit_dimension=fit_dims, channels=channels,
                                                 kind=kind))
        tables["pairs"].append(pairs.assign(kind=kind))
        tables["heldout"].append(heldout.assign(kind=kind))
    return (pd.concat(tables["groups"], ignore_index=True)[GROUP_COLUMNS],
            pd.concat(tables["pairs"], ignore_index=True)[PAIR_COLUMNS],
            pd.concat(tables["heldout"], ignore_index=True)[HELDOUT_COLUMNS])
