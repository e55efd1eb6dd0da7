"""Semantic scores: how well clusters and a linear read-out of features recover labels and scene factors."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import metrics
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from semcore.plan.sizes import PCA_FIT_ROWS, PROBE_MAX_DIMS

# Numeric factors (position, scale, hue…) are scored as this many equal-count bins.
FACTOR_BINS = 4
PCA_CHUNK_ROWS = 8192  # rows projected on the principal components at a time


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


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, max_iter: int = 1000, seed: int = 0) -> LogisticRegression:
    """A multinomial logistic regression (L2, scikit-learn's default C) on features already standardised."""
    return LogisticRegression(max_iter=max_iter, random_state=seed).fit(train_x, train_y)


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   max_iter: int = 1000, seed: int = 0) -> float:
    """Test accuracy of the probe on features standardised by their train rows."""
    scaler = StandardScaler().fit(train_x)
    probe = fit_probe(scaler.transform(train_x), train_y, max_iter, seed)
    return float(probe.score(scaler.transform(test_x), test_y))


def probe_features(x: np.ndarray, train: np.ndarray, seed: int = 0) -> np.ndarray:
    """x [N, D] standardised by the mean and std of (a sample of) its train rows; wider than
    PROBE_MAX_DIMS, then projected on their leading principal components. float32, a chunk of rows at a time.

    Standardised before the projection, never after: with fewer train rows than columns the components
    past the rows' rank hold rounding alone, and scaling them to unit variance made the pixel probe score
    0.39 on a balanced two-class folder (0.96 on the pixels themselves). An L2-penalised logistic
    regression is unchanged by a rotation, and its weights lie in the span of the centred train rows: on
    components that span them it fits exactly what it fits on the standardised features."""
    train_rows = np.flatnonzero(train)
    sample = np.sort(np.random.default_rng(seed).permutation(train_rows)[:PCA_FIT_ROWS])
    scaler = StandardScaler().fit(x[sample])
    transforms = [scaler.transform]
    if x.shape[1] > PROBE_MAX_DIMS:
        pca = PCA(min(PROBE_MAX_DIMS, len(sample)), svd_solver="randomized", random_state=seed)
        transforms.append(pca.fit(scaler.transform(x[sample])).transform)

    def project(rows: np.ndarray) -> np.ndarray:
        for transform in transforms:
            rows = transform(rows)
        return rows.astype(np.float32)

    return np.concatenate([project(x[start:start + PCA_CHUNK_ROWS]) for start in range(0, len(x), PCA_CHUNK_ROWS)])


def semantic_targets(labels: pd.Series, factors: pd.DataFrame) -> dict[str, pd.Series]:
    """{target name: class of each image (NaN where undefined)}: the label, when there is one, and each
    factor, numeric ones binned into FACTOR_BINS equal-count bins. A class of a single image among these
    images is left out (NaN), with a logged warning: the probe could not both learn and test it, and it
    groups nothing for the cluster scores."""
    targets = {} if labels.isna().all() else {"label": _without_lonely_classes(labels, "label")}
    for name in factors.columns:
        values = factors[name]
        if pd.api.types.is_numeric_dtype(values):
            values = pd.qcut(values, FACTOR_BINS, labels=False, duplicates="drop")
        values = _without_lonely_classes(values, name)
        if values.nunique() > 1:
            targets[name] = values
    return targets


def _without_lonely_classes(values: pd.Series, name: str) -> pd.Series:
    counts = values.value_counts()
    lonely = counts.index[counts < 2]
    if len(lonely):
        logging.getLogger(__name__).warning(
            "%s: %d class(es) of a single image left out of the scores: %s", name, len(lonely),
            ", ".join(map(str, sorted(lonely, key=str)[:20])) + (" …" if len(lonely) > 20 else ""))
        values = values.where(~values.isin(lonely))
    return values


def probe_predictions(meta: pd.DataFrame, x: np.ndarray, factors: pd.DataFrame, max_iter: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """Whether the probe (fit on the train split) gets each test image right, for the label and each
    categorical factor (a probe per numeric factor's bins would cost more than it tells). Long format:
    target, key, correct; the unit a bootstrap of the accuracy resamples (semcore.findings)."""
    train = (meta.split == "train").to_numpy()
    x = probe_features(x, train, seed)
    frames = []
    for target, values in semantic_targets(meta.label, factors.select_dtypes(exclude="number")).items():
        values = values.to_numpy()
        defined = pd.notna(values)
        fit, held_out = train & defined, ~train & defined
        if len(set(values[fit])) < 2:
            continue  # nothing to learn: one class among the train images
        probe = fit_probe(x[fit], values[fit].astype(str), max_iter, seed)
        correct = probe.predict(x[held_out]) == values[held_out].astype(str)
        frames.append(pd.DataFrame({"target": target, "key": meta.key.to_numpy()[held_out], "correct": correct}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["target", "key", "correct"])


def probe_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Probe accuracy per target from probe_predictions. Long format: target, metric, value."""
    accuracy = predictions.groupby("target", sort=False).correct.mean().astype(float)
    return pd.DataFrame({"target": accuracy.index, "metric": "probe accuracy", "value": accuracy.to_numpy()})


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
