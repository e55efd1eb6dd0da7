"""Semantic scores: how well clusters and a linear read-out of features recover labels and scene factors."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import metrics
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# Numeric factors (position, scale, hue…) are scored as this many equal-count bins.
FACTOR_BINS = 4
# The probe reads features wider than this through their leading principal components: logistic
# regression (lbfgs, float64) on 200,000 ImageNet pixel vectors of 12,288 values and 1,000 classes would
# need ~39 GB and days; 512 is φ's width in the paper's network, so pixels are probed at φ's dimension.
PROBE_MAX_DIMS = 512
# Train rows the principal components are fitted on (a random sample), and rows projected at a time.
PCA_FIT_ROWS, PCA_CHUNK_ROWS = 20_000, 8192


def purity(truth: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of points whose cluster's most common true class is their own."""
    table = metrics.cluster.contingency_matrix(truth, clusters)
    return table.max(axis=0).sum() / table.sum()


def matched_accuracy(truth: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to classes (Hungarian): the "ACC" of the
    clustering literature; clusters left without a class count as errors."""
    table = metrics.cluster.contingency_matrix(truth, clusters)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return table[rows, cols].sum() / table.sum()


def cluster_scores(truth: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    return {
        "nmi": metrics.normalized_mutual_info_score(truth, clusters),
        "ami": metrics.adjusted_mutual_info_score(truth, clusters),
        "ari": metrics.adjusted_rand_score(truth, clusters),
        "purity": purity(truth, clusters),
        "accuracy": matched_accuracy(truth, clusters),
    }


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   max_iter: int = 1000, seed: int = 0) -> float:
    """Test accuracy of a multinomial logistic regression fit on standardised train features."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    probe.fit(train_x, train_y)
    return float(probe.score(test_x, test_y))


def probe_features(x: np.ndarray, train: np.ndarray, seed: int = 0) -> np.ndarray:
    """x itself when it has at most PROBE_MAX_DIMS columns; otherwise x projected [N, ≤ PROBE_MAX_DIMS]
    float32 on the leading principal components of a sample of its train rows, a chunk of rows at a time."""
    if x.shape[1] <= PROBE_MAX_DIMS:
        return x
    train_rows = np.flatnonzero(train)
    sample = np.sort(np.random.default_rng(seed).permutation(train_rows)[:PCA_FIT_ROWS])
    pca = PCA(min(PROBE_MAX_DIMS, len(sample)), svd_solver="randomized", random_state=seed).fit(x[sample])
    return np.concatenate([pca.transform(x[start:start + PCA_CHUNK_ROWS]).astype(np.float32)
                           for start in range(0, len(x), PCA_CHUNK_ROWS)])


def semantic_targets(labels: pd.Series, factors: pd.DataFrame) -> dict[str, pd.Series]:
    """{target name: class of each image (NaN where undefined)}: the label, when there is one, and each
    factor, numeric ones binned into FACTOR_BINS equal-count bins."""
    targets = {} if labels.isna().all() else {"label": labels}
    for name in factors.columns:
        values = factors[name]
        if pd.api.types.is_numeric_dtype(values):
            values = pd.qcut(values, FACTOR_BINS, labels=False, duplicates="drop")
        if values.nunique() > 1:
            targets[name] = values
    return targets


def probe_table(meta: pd.DataFrame, x: np.ndarray, factors: pd.DataFrame, max_iter: int = 1000,
                seed: int = 0) -> pd.DataFrame:
    """Probe accuracy (fit on the train split, scored on test) for the label and each categorical factor
    (a probe per numeric factor's bins would cost more than it tells). Long format: target, metric, value."""
    train = (meta.split == "train").to_numpy()
    x = probe_features(x, train, seed)
    rows = []
    for target, values in semantic_targets(meta.label, factors.select_dtypes(exclude="number")).items():
        values = values.to_numpy()
        defined = pd.notna(values)
        fit, held_out = train & defined, ~train & defined
        if len(set(values[fit])) < 2:
            continue  # nothing to learn: one class among the train images
        accuracy = probe_accuracy(x[fit], values[fit].astype(str), x[held_out], values[held_out].astype(str),
                                  max_iter=max_iter, seed=seed)
        rows.append(dict(target=target, metric="probe accuracy", value=accuracy))
    return pd.DataFrame(rows, columns=["target", "metric", "value"])


def cluster_score_table(clusters: np.ndarray, targets: dict[str, pd.Series]) -> pd.DataFrame:
    """Long format: target, metric, value: each clustering score against each target, on the images
    where the target is defined."""
    rows = []
    for name, values in targets.items():
        defined = values.notna().to_numpy()
        truth = pd.factorize(values[defined])[0]
        for metric, value in cluster_scores(truth, clusters[defined]).items():
            rows.append(dict(target=name, metric=metric, value=float(value)))
    return pd.DataFrame(rows, columns=["target", "metric", "value"])
