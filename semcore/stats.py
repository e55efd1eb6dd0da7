"""Statistics of channel means: sparsity, stability across σ, channel selectivity, the subspace
tools (Gram matrices, effective dimensions, principal angles) that semcore.subspaces tests the union of
subspaces with, and selectivity for known generative factors. Inputs are plain arrays; every function
is batched.

φ of every image (1.28M × 512 float32 for ImageNet: 2.6 GB) is never copied whole nor converted to
float64: sums run over chunks of rows in float64, subspaces come from C × C Gram matrices, and the
mutual information takes a few channels at a time.

Selective channels (paper fig. 3) presuppose a bimodal distribution of the channels' PR across images;
`bimodality` tests it (Hartigan's dip test, and one against two Gaussian components by BIC with a
bootstrap interval over channels) and gives a verdict: holds, contradicted or undecided. Which channels
are selective follows a rule (config stats.selective_rule, `selective_threshold`): "test", those below
the fitted mixture's threshold only when the verdict is "holds", otherwise none; "otsu", those below
Otsu's threshold whatever the test says; a number, those below it.

Zeros (a dead channel, an image whose means are all zero, a whole φ of zeros) give defined values, never
an error: a statistic that is 0/0 on them is NaN, and the tables keep those rows so that the NaNs can
be counted (semcore.findings reports how many it leaves out of its means):
- PR of a zero vector: NaN (block_pr_table: the image's `pr`; channel_table: a dead channel's `pr`);
- cosine similarity with a zero vector: NaN (stability_table);
- a dead channel (zero on every image): `dead` True, `pr` NaN, `mean` 0, `active_fraction` 0, never
  selective; an image whose φ is zero activates no channel, so it belongs to no group of
  semcore.subspaces (whose docstring lists its conventions) and lowers every channel's PR across images,
  as any image that activates nothing;
- bimodality of the channel PRs with fewer than MIN_DISTINCT distinct live ones (e.g. φ all zero):
  verdict "undecided", its numbers NaN; Otsu's threshold with fewer than two: NaN; no channel selective;
- effective and participation dimension of rows that are all zero: 0; principal angles to their
  (zero-dimensional) subspace: none;
- mutual information of a constant channel (e.g. dead) with any factor: 0.
"""

from __future__ import annotations

import numbers
from typing import Iterator

import diptest
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.linalg import subspace_angles
from scipy.optimize import brentq
from skimage.filters import threshold_otsu
from sklearn.feature_selection import mutual_info_classif, mutual_info_regression
from sklearn.mixture import GaussianMixture

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


# The split of channels into selective and non-selective (paper fig. 3) is a claim about the channel-PR
# distribution: two modes. It is tested, not assumed. Mixtures' variances are floored at REG_COVAR
# (scikit-learn's default), which bounds the likelihood of a component on a repeated value.
REG_COVAR = 1e-6
MIN_DISTINCT = 4  # distinct live channel PRs the test needs
# EM stops when the mean log-likelihood per channel changes by less than EM_TOL (scikit-learn's default:
# 1e-3, 100 iterations). On one mode EM climbs slowly, and an unconverged fit understates the two
# components' likelihood: on 8 unimodal samples of 512 channels the upper end of ΔBIC's interval rose by
# 1–3 BIC units (up to 6) from 1e-3 to 1e-4, and by 1–4 (up to 13) from 1e-4 to 1e-5, which took 3× the
# time (1e-4: ~1 s for 512 channels and 1000 resamples on one core). That upper end is what can
# contradict bimodality.
EM_TOL, EM_MAX_ITER, EM_STARTS = 1e-4, 300, 5
SELECTIVE_RULES = ("test", "otsu")  # or a number: the PR below which a live channel is selective


def _one_gaussian_loglik(x: np.ndarray) -> np.ndarray:
    """Maximum log-likelihood of one Gaussian for each row of x [..., n] (closed form)."""
    var = x.var(axis=-1) + REG_COVAR
    return -0.5 * x.shape[-1] * (np.log(2 * np.pi * var) + (var - REG_COVAR) / var)


def _two_gaussians_loglik(x: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """Log-likelihood of two Gaussians fitted by EM to each row of x [B, n] at once, from the start
    (weights, means, variances [B, 2] each, updated in place); a row stops when its mean log-likelihood
    per value changes by less than EM_TOL (as scikit-learn's GaussianMixture)."""
    n = x.shape[1]
    loglik = np.full(len(x), -np.inf)
    rows, xs, squares = np.arange(len(x)), x, x * x  # the rows still moving, and their values
    total, total_squares = xs.sum(axis=1), squares.sum(axis=1)
    with np.errstate(divide="ignore"):  # a component of weight 0: log 0 = -inf, responsibility 0
        for _ in range(EM_MAX_ITER):
            w, m, v = weights[rows], means[rows], variances[rows]
            log_low, log_high = (np.log(w[:, k, None]) - 0.5 * np.log(2 * np.pi * v[:, k, None])
                                 - (xs - m[:, k, None]) ** 2 / (2 * v[:, k, None]) for k in (0, 1))
            log_total = np.logaddexp(log_low, log_high)
            current = log_total.mean(axis=1)
            moving = np.abs(current - loglik[rows] / n) >= EM_TOL
            loglik[rows] = current * n
            if not moving.any():
                break
            if not moving.all():
                rows, xs, squares, log_high, log_total = (a[moving] for a in (rows, xs, squares, log_high, log_total))
                total, total_squares = total[moving], total_squares[moving]
            high = np.exp(log_high - log_total)  # responsibility of component 1
            counts = np.stack([n - high.sum(axis=1), high.sum(axis=1)], axis=1) + 10 * np.finfo(float).eps
            high_total, high_squares = (high * xs).sum(axis=1), (high * squares).sum(axis=1)
            m = np.stack([total - high_total, high_total], axis=1) / counts
            v = np.stack([total_squares - high_squares, high_squares], axis=1) / counts - m**2 + REG_COVAR
            weights[rows], means[rows], variances[rows] = counts / n, m, np.maximum(v, REG_COVAR)
    return loglik


def _delta_bic(loglik1: np.ndarray, loglik2: np.ndarray, n: int) -> np.ndarray:
    """BIC(1 Gaussian) − BIC(2 Gaussians), 3 parameters more (a mean, a variance, a weight): > 0 favours
    two. Two components nest one, so their maximum likelihood is at least one's."""
    return 2 * (np.maximum(loglik2, loglik1) - loglik1) - 3 * np.log(n)


def _bootstrap_delta_bic(x: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray,
                         resamples: int, rng: np.random.Generator) -> np.ndarray:
    """ΔBIC of `resamples` resamples of x (with replacement), all fitted at once, CHUNK_ELEMENTS values
    at a time; each resample's two-Gaussian fit is the better of two EM starts: the full sample's fit,
    and the resample's quartiles."""
    n = len(x)
    out = np.empty(resamples)
    step = max(1, CHUNK_ELEMENTS // n)
    for start in range(0, resamples, step):
        chunk = slice(start, min(start + step, resamples))
        rows = chunk.stop - chunk.start
        xs = x[rng.integers(0, n, (rows, n))]
        fitted = _two_gaussians_loglik(xs, np.tile(weights, (rows, 1)), np.tile(means, (rows, 1)),
                                       np.tile(variances, (rows, 1)))
        spread = np.tile(np.maximum(xs.var(axis=1) / 4, REG_COVAR)[:, None], (1, 2))
        quartiles = _two_gaussians_loglik(xs, np.full((rows, 2), 0.5), np.quantile(xs, [0.25, 0.75], axis=1).T, spread)
        out[chunk] = _delta_bic(_one_gaussian_loglik(xs), np.maximum(fitted, quartiles), n)
    return out


def _crossing(weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> float:
    """The point between the two means where the low component's posterior falls to 0.5; NaN when it is
    not above 0.5 at the low mean and below at the high one (no such single point between them)."""
    def log_ratio(x):
        return float(np.diff(np.log(weights) - 0.5 * np.log(variances) - (x - means) ** 2 / (2 * variances))[0])

    if not log_ratio(means[0]) < 0 < log_ratio(means[1]):
        return float("nan")
    return float(brentq(log_ratio, means[0], means[1]))


def bimodality(channel_pr: np.ndarray, alpha: float = 0.05, resamples: int = 1000, confidence: float = 0.95,
               seed: int = 0) -> dict:
    """Is the distribution of the live channels' PR (finite; a dead channel's is NaN) bimodal? Two tests:
    Hartigan's dip test (dip, dip_p), and one against two Gaussian components (scikit-learn
    GaussianMixture, EM_STARTS k-means++ starts): delta_bic = BIC(1) − BIC(2), > 0 favours two, with a
    percentile bootstrap interval over channels (delta_bic_low, delta_bic_high; `resamples` resamples at
    level `confidence`). verdict: "holds" when dip_p < alpha and delta_bic_low > 0; "contradicted" when
    delta_bic_high < 0; otherwise "undecided", as with fewer than MIN_DISTINCT distinct PRs (the numbers
    then NaN). threshold: the PR between the two components' means where the low component's posterior
    falls below 0.5 (NaN when not fitted or no such point); components: the fitted [weight, mean, sd],
    low mean first (empty when not fitted).

    Each resample is refitted by a vectorised EM (all resamples at once; _bootstrap_delta_bic). The
    bootstrap of a likelihood ratio is biased up (a resample adds its own chance structure to the
    sample's), so on one mode the upper end of the interval sits near 0: a Gaussian sample of 256 or 512
    channels comes out "contradicted" or "undecided" by chance, while a clear second mode holds."""
    x = np.asarray(channel_pr, dtype=float)
    x = x[np.isfinite(x)]
    nan = float("nan")
    result = dict(live=len(x), dip=nan, dip_p=nan, delta_bic=nan, delta_bic_low=nan, delta_bic_high=nan,
                  alpha=alpha, resamples=resamples, confidence=confidence, verdict="undecided", threshold=nan,
                  components=[])
    if len(np.unique(x)) < MIN_DISTINCT:
        return result
    dip, dip_p = diptest.diptest(x)
    mixture = GaussianMixture(2, covariance_type="spherical", reg_covar=REG_COVAR, tol=EM_TOL,
                              max_iter=EM_MAX_ITER, n_init=EM_STARTS, init_params="k-means++",
                              random_state=seed).fit(x[:, None])
    order = np.argsort(mixture.means_[:, 0])
    weights, means, variances = mixture.weights_[order], mixture.means_[order, 0], mixture.covariances_[order]
    delta = _delta_bic(_one_gaussian_loglik(x), mixture.score(x[:, None]) * len(x), len(x))
    boot = _bootstrap_delta_bic(x, weights, means, variances, resamples, np.random.default_rng(seed))
    low, high = np.percentile(boot, [50 * (1 - confidence), 50 * (1 + confidence)])
    verdict = ("holds" if dip_p < alpha and low > 0 else "contradicted" if high < 0 else "undecided")
    result.update(dip=float(dip), dip_p=float(dip_p), delta_bic=float(delta), delta_bic_low=float(low),
                  delta_bic_high=float(high), verdict=verdict, threshold=_crossing(weights, means, variances),
                  components=[[float(w), float(m), float(np.sqrt(v))] for w, m, v in zip(weights, means, variances)])
    return result


def selective_threshold(channel_pr: np.ndarray, rule: str | float, test: dict) -> float:
    """The PR below which a live channel is selective under `rule` (NaN: none is): "test", the threshold
    of the bimodality test (`test`) only when its verdict is "holds"; "otsu", Otsu's threshold of the live
    channels' PRs, whatever the test says; a number, that number."""
    if rule == "test":
        return test["threshold"] if test["verdict"] == "holds" else float("nan")
    if rule == "otsu":
        live = channel_pr[np.isfinite(channel_pr)]
        return float(threshold_otsu(live)) if len(np.unique(live)) >= 2 else float("nan")
    if isinstance(rule, numbers.Real) and not isinstance(rule, bool):
        return float(rule)
    raise ValueError(f"selective rule {rule!r}: not one of {', '.join(SELECTIVE_RULES)} nor a number")


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


def channel_table(phi: np.ndarray, active_fraction: float, rule: str | float = "test", alpha: float = 0.05,
                  resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Per channel: PR across images, mean, fraction of images where it is active, dead (zero on every
    image: PR NaN) or not, selective or not (paper fig. 3): a live channel whose PR is below the threshold
    of `rule` (selective_threshold; never a dead channel, nor any channel when the threshold is NaN).
    Returns (table, summary): channels, dead, live, selective (their counts), rule, threshold (the one
    applied), mixture_threshold (the bimodality test's, applied or not) and the test's numbers
    (bimodality: dip, dip_p, delta_bic, delta_bic_low, delta_bic_high, alpha, resamples, confidence,
    verdict, components)."""
    total, squares = sums(phi, axis=0)
    pr = _participation_ratio(total, squares, len(phi))
    test = bimodality(pr, alpha, resamples, confidence, seed)
    threshold = selective_threshold(pr, rule, test)
    table = pd.DataFrame({"channel": np.arange(phi.shape[1]), "pr": pr, "mean": total / len(phi),
                          "active_fraction": active_channels(phi, active_fraction).mean(axis=0),
                          "dead": squares == 0, "selective": pr < threshold})
    summary = dict(channels=len(table), dead=int(table.dead.sum()), live=test.pop("live"),
                   selective=int(table.selective.sum()), rule=rule, threshold=threshold,
                   mixture_threshold=test.pop("threshold"), **test)
    return table, summary
