"""2-D maps of φ for the explorer: the first two principal components, and a t-SNE.

t-SNE (openTSNE) rather than UMAP: the explorer is about which images sit together, which t-SNE keeps
best, and its PCA initialisation keeps the large-scale layout reproducible. openTSNE installs as plain
wheels; on 50,000 × 512 φ on 2 cores it took 83 s, umap-learn 71 s with numba's compilation
(benchmarks/bench_explorer.py --umap): not a reason to take numba and llvmlite.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from openTSNE import TSNE
from sklearn.decomposition import PCA


def embedding(x: np.ndarray, perplexity: float, seed: int, threads: int) -> pd.DataFrame:
    """2-D positions of the rows of x: the first two principal components and a t-SNE (openTSNE, PCA
    initialisation; the perplexity capped at (n − 1) / 3, which a few images need)."""
    pca = PCA(n_components=2, random_state=seed).fit_transform(x)
    tsne = TSNE(perplexity=min(perplexity, (len(x) - 1) / 3), initialization="pca", random_state=seed,
                n_jobs=threads).fit(x.astype(np.float64))
    return pd.DataFrame({"pca_x": pca[:, 0], "pca_y": pca[:, 1], "tsne_x": tsne[:, 0], "tsne_y": tsne[:, 1]})
