"""Does the representation emerge from learning to denoise? The same measures of φ at each snapshot of
training (step 0: the untrained network): its sparsity (mean participation ratio), how well k-means
clusters and a linear probe recover the label and the scene factors, and the denoiser's test PSNR.

One tidy table, long format: step, method, sigma, k, target, metric, value. `method` is "φ" (metric
"mean PR"), "k-means" (nmi, ami), "linear probe" (probe accuracy) or "denoiser" (PSNR in dB at the eval
σ in `sigma`; φ's σ for the others).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from semcore import cluster, scores, stats

COLUMNS = ["step", "method", "sigma", "k", "target", "metric", "value"]
CLUSTER_METRICS = ("nmi", "ami")


def phi_scores(meta: pd.DataFrame, phi: np.ndarray, factors: pd.DataFrame, *, ks: list[int], normalize: bool,
               kmeans_options: dict, probe_max_iter: int, seed: int, device: str = "cpu") -> pd.DataFrame:
    """Mean PR, k-means NMI/AMI at each k and probe accuracies of φ [N, C] (rows of `meta`, with their
    factors): columns method, k, target, metric, value."""
    frames = [pd.DataFrame([dict(method="φ", target=None, metric="mean PR",
                                 value=float(np.nanmean(stats.participation_ratio(phi, axis=1))))])]
    x = cluster.normalized(phi) if normalize else phi
    targets = scores.semantic_targets(meta.label, factors)
    for k in ks:
        labels = cluster.kmeans(x, k, seed=seed, device=device, **kmeans_options).labels
        table = scores.cluster_score_table(labels, targets)
        frames.append(table[table.metric.isin(CLUSTER_METRICS)].assign(method="k-means", k=k))
    predictions = scores.probe_predictions(meta, phi, factors, max_iter=probe_max_iter, seed=seed)
    frames.append(scores.probe_table(predictions).assign(method="linear probe"))
    return pd.concat(frames, ignore_index=True).reindex(columns=COLUMNS[1:]).astype({"k": "Int64"})


def psnr_rows(table: list[dict]) -> pd.DataFrame:
    """The denoiser's PSNR table (semcore.train.psnr_table) as emergence rows."""
    return pd.DataFrame([dict(method="denoiser", sigma=row["sigma"], metric="PSNR (dB)", value=row["psnr_denoised"])
                         for row in table]).reindex(columns=COLUMNS[1:]).astype({"k": "Int64"})
