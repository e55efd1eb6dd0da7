"""k-means (k-means++ and Lloyd) and nearest neighbours in torch: batched, on the CPU or the GPU.

One implementation for φ and for the baselines. Distances are ‖x‖² − 2x·c + ‖c‖², one matrix product
per chunk of rows, so memory beyond the data is one chunk of distances, whatever n and k are; the same
code runs the paper's 1.28M × 512 at k = 10,000 on a GPU. Chosen over scikit-learn's KMeans (the authors'),
MiniBatchKMeans and faiss on measured speed at equal inertia: benchmarks/bench_kmeans.py. Restarts run on
a sample of the data, as in faiss; the chosen centers are refined on all of it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from semcore.plan.sizes import CANDIDATE_MARGIN, DISTANCE_CHUNK, POINTS_PER_CENTROID, neighbour_block
from semcore.progress import progress


@dataclass
class KMeansResult:
    centroids: np.ndarray  # [k, d] float32
    labels: np.ndarray  # [n] int64
    distances: np.ndarray  # [n] Euclidean distance of each point to its centroid
    inertia: float  # Σ squared distances, the k-means objective
    n_iter: int


def as_tensor(data: np.ndarray | torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """float32 on the device, without a copy on the CPU. Arrays read from Arrow are read-only; nothing
    here writes to them, so torch's warning about it does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.as_tensor(data, dtype=torch.float32).to(device)


def _row_chunks(n: int, k: int) -> list[slice]:
    step = max(1, DISTANCE_CHUNK // k)  # elements of the n × k distances at a time (128 MB of float32)
    return [slice(start, start + step) for start in range(0, n, step)]


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    """‖x_i‖² of each row, without an n × d temporary (the data may fill most of the memory)."""
    return torch.linalg.vector_norm(x, dim=1).square_()


def squared_distances(x: torch.Tensor, centers: torch.Tensor, x_norms: torch.Tensor | None = None) -> torch.Tensor:
    """[n, k] squared Euclidean distances, clamped at 0 (the expansion can round below it)."""
    x_norms = squared_norms(x) if x_norms is None else x_norms
    d2 = torch.addmm(x_norms[:, None], x, centers.T, alpha=-2).add_((centers * centers).sum(1))
    return d2.clamp_(min=0)


def nearest_centers(x: torch.Tensor, centers: torch.Tensor, x_norms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the nearest center, squared distance to it) for each row, chunk by chunk."""
    labels = torch.empty(len(x), dtype=torch.long, device=x.device)
    d2 = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for rows in _row_chunks(len(x), len(centers)):
        d2[rows], labels[rows] = squared_distances(x[rows], centers, x_norms[rows]).min(1)
    return labels, d2


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator, x_norms: torch.Tensor) -> torch.Tensor:
    """Greedy k-means++ (as scikit-learn): each new center is the best of 2 + log k D²-sampled candidates."""
    n_trials = 2 + int(math.log(k))
    centers = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    first = torch.randint(len(x), (1,), generator=generator, device=x.device)
    centers[0] = x[first]
    closest = squared_distances(x, centers[:1], x_norms)[:, 0]
    for c in range(1, k):
        cumulative = closest.double().cumsum(0)  # float64: a float32 running sum of 10⁶ terms drifts
        draws = torch.rand(n_trials, generator=generator, device=x.device, dtype=torch.float64) * cumulative[-1]
        candidates = torch.searchsorted(cumulative, draws).clamp_(max=len(x) - 1)
        trial = torch.minimum(closest[:, None], squared_distances(x, x[candidates], x_norms))
        best = trial.sum(0).argmin()
        centers[c], closest = x[candidates[best]], trial[:, best].contiguous()
    return centers


def cluster_sums(x: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """[k, d]: the sum of the rows of x in each cluster, the same on every run.

    index_add_ sums each cluster's rows in row order on the CPU, but with atomic adds in no fixed order
    on CUDA (the last bits, then the centers, vary run to run). There index_put_(accumulate=True) sorts
    the labels and sums each cluster's rows in order: torch's own deterministic index_add_ on CUDA."""
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device)
    if x.device.type == "cuda":
        return sums.index_put_((labels,), x, accumulate=True)
    return sums.index_add_(0, labels, x)


def lloyd(x: torch.Tensor, centers: torch.Tensor, x_norms: torch.Tensor, max_iter: int,
          threshold: float, bar: tqdm | None = None) -> tuple[torch.Tensor, int]:
    """Lloyd's iterations from the given centers until they move less than threshold (squared, summed).
    A cluster left empty takes the point farthest from its center, so there are always k clusters. Each
    iteration advances `bar`, if given."""
    k = len(centers)
    for n_iter in range(1, max_iter + 1):
        labels, d2 = nearest_centers(x, centers, x_norms)
        counts = torch.bincount(labels, minlength=k)
        updated = cluster_sums(x, labels, k) / counts.clamp(min=1)[:, None].to(x.dtype)
        empty = (counts == 0).nonzero()[:, 0]
        if len(empty):
            updated[empty] = x[d2.topk(len(empty)).indices]
        shift = ((updated - centers) ** 2).sum().item()
        centers = updated
        if bar is not None:
            bar.update()
        if shift <= threshold:
            break
    return centers, n_iter


def kmeans(data: np.ndarray | torch.Tensor, k: int, *, n_init: int = 1, max_iter: int = 300, tol: float = 1e-4,
           seed: int = 0, points_per_centroid: int | None = POINTS_PER_CENTROID, device: str | torch.device = "cpu") -> KMeansResult:
    """k-means++ seeds and Lloyd's iterations; the best of n_init runs by inertia.

    As faiss does, the n_init runs use a random sample of points_per_centroid · k points when the data
    are larger (None: all points); the best run's centers are then refined by Lloyd on all the data.
    Stops when the centers move less than tol × the mean per-feature variance (scikit-learn's rule).
    """
    x = as_tensor(data, device)
    if not 1 <= k <= len(x):
        raise ValueError(f"k={k} must be between 1 and the number of points ({len(x)})")
    x_norms = squared_norms(x)
    threshold = tol * (x_norms.mean() - x.mean(0).square().sum()).item() / x.shape[1]  # tol × mean variance
    generator = torch.Generator(device=x.device).manual_seed(seed)
    sample, sample_norms = x, x_norms
    if points_per_centroid is not None and len(x) > points_per_centroid * k:
        rows = torch.randperm(len(x), generator=generator, device=x.device)[:points_per_centroid * k]
        sample, sample_norms = x[rows], x_norms[rows]

    best, best_inertia = None, float("inf")
    # Progress in Lloyd iterations, with no total: each run stops when its centers settle.
    with progress(desc=f"k-means k={k}", unit="iterations") as bar:
        for restart in range(1, n_init + 1):
            bar.set_postfix_str(f"restart {restart}/{n_init} on {len(sample)} points, best inertia {best_inertia:.6g}",
                                refresh=False)
            centers, n_iter = lloyd(sample, kmeans_plusplus(sample, k, generator, sample_norms), sample_norms,
                                    max_iter, threshold, bar)
            inertia = nearest_centers(sample, centers, sample_norms)[1].double().sum().item()
            if inertia < best_inertia:
                best, best_inertia = (centers, n_iter), inertia
        centers, n_iter = best
        if sample is not x:
            bar.set_postfix_str(f"refining the best of {n_init} on all {len(x)} points", refresh=False)
            centers, n_iter = lloyd(x, centers, x_norms, max_iter, threshold, bar)
    labels, d2 = nearest_centers(x, centers, x_norms)
    return KMeansResult(centers.cpu().numpy(), labels.cpu().numpy(), d2.sqrt().cpu().numpy(), d2.double().sum().item(), n_iter)


def read_centroids(path: str, clusters: list[int] | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """Cluster centroids (a Parquet with columns cluster, centroid, as the kmeans rule writes them), e.g. as
    sampling targets: (cluster ids, [k, C] float32), of the given clusters in their order, or all."""
    table = pd.read_parquet(path)
    if clusters is not None:
        table = table.set_index("cluster").loc[clusters].reset_index()
    return table.cluster.to_numpy(), torch.from_numpy(np.stack(table.centroid).astype(np.float32))


def nearest_neighbours(queries: np.ndarray, data: np.ndarray, n_neighbours: int, exclude_self: np.ndarray | None = None,
                       device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(indices [q, m], Euclidean distances [q, m]) of each query's m nearest rows of data, nearest first.

    exclude_self[i] is the row of data that query i is (or -1): it is never its own neighbour.
    """
    q, x = as_tensor(queries, device), as_tensor(data, device)
    d2 = squared_distances(q, x)
    if exclude_self is not None:
        rows = torch.as_tensor(exclude_self, device=d2.device)
        inside = rows >= 0
        d2[inside.nonzero()[:, 0], rows[inside]] = float("inf")
    values, indices = d2.topk(n_neighbours, dim=1, largest=False)
    return indices.cpu().numpy(), values.sqrt().cpu().numpy()


def nearest_in_chunks(queries: np.ndarray, chunks, k: int, exclude: np.ndarray | None = None,
                      device: str | torch.device = "cpu", centred: bool = False) -> pd.DataFrame:
    """Each query's k nearest rows of data read a chunk at a time: `chunks` yields (meta table, rows [n, C]),
    and memory holds one chunk and the best rows so far, never the data (a training set's φ, its pixels).

    Returns one row per query and neighbour, nearest first: query (its index), rank (0 first), row (counted
    over all the chunks), distance (Euclidean, float64) and the neighbour's columns of meta. exclude[i] is the
    row (counted likewise) that query i is, or -1: never its own neighbour.

    Candidates are chosen by nearest_neighbours in float32, the rows shifted by the queries' mean: the
    expansion's rounding is then relative to the rows' spread, not to their norms (φ of a barely trained
    network differs between images by 1e-5 of its norm, where unshifted float32 ranks by noise). A few
    more than k are kept, their distances recomputed in float64, so that near-ties are ordered exactly and
    a row equal to the query is at distance 0. centred: the rows are shifted already (no copy of a chunk)."""
    queries = np.asarray(queries, dtype=np.float32)
    shift = 0 if centred else queries.mean(axis=0, dtype=np.float64).astype(np.float32)
    best, offset = None, 0  # best: {column: [queries, ≤ k]}
    for meta, x in chunks:
        inside = None if exclude is None else (exclude >= offset) & (exclude < offset + len(x))
        own = None if exclude is None else np.where(inside, exclude - offset, -1)
        found, _ = nearest_neighbours(queries - shift, x if centred else x - shift, min(k + CANDIDATE_MARGIN, len(x)),
                                      exclude_self=own, device=device)
        distance = np.linalg.norm(x[found].astype(np.float64) - queries[:, None].astype(np.float64), axis=2)
        if own is not None:
            distance[found == own[:, None]] = np.inf  # a chunk of few rows: the query itself is among them
        columns = {"row": found + offset, "distance": distance} | {name: meta[name].to_numpy()[found] for name in meta}
        if best is not None:
            columns = {name: np.hstack([best[name], values]) for name, values in columns.items()}
        order = np.argsort(columns["distance"], axis=1, kind="stable")[:, :k]
        best = {name: np.take_along_axis(values, order, 1) for name, values in columns.items()}
        offset += len(x)
    if best is None:
        raise ValueError("no rows to search: the chunks are empty")
    count, kept = best["distance"].shape
    return pd.DataFrame({"query": np.repeat(np.arange(count), kept), "rank": np.tile(np.arange(kept), count)}
                        | {name: values.ravel() for name, values in best.items()})


def normalized(phi: np.ndarray) -> np.ndarray:
    """φ / ‖φ‖ per row (a zero row stays zero): clusters by direction, not by magnitude."""
    norms = np.linalg.norm(phi, axis=1, keepdims=True)
    return np.divide(phi, norms, out=np.zeros_like(phi), where=norms > 0)


def neighbour_graph(x: np.ndarray, k: int, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(rows [n, k], Euclidean distances [n, k]) of each row's k nearest other rows of x, nearest first, exact:
    nearest_in_chunks (the neighbours rule's search) on x centred once, a block of queries at a time."""
    if not 1 <= k < len(x):
        raise ValueError(f"explorer.neighbours: {k} neighbours need more than {k} images; there are {len(x)}")
    x = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    rows, step = np.arange(len(x)), neighbour_block(len(x), k, x.shape[1])
    no_columns = pd.DataFrame(index=rows)
    found, distances = np.empty((len(x), k), np.int64), np.empty((len(x), k), np.float64)
    for start in range(0, len(x), step):
        block = rows[start:start + step]
        table = nearest_in_chunks(x[block], [(no_columns, x)], k, exclude=block, device=device, centred=True)
        found[block] = table["row"].to_numpy().reshape(len(block), k)
        distances[block] = table["distance"].to_numpy().reshape(len(block), k)
    return found, distances
