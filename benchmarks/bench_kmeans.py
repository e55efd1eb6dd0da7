"""k-means candidates on the same data: time, inertia and memory, then a projection to the paper's size.

Each candidate runs in a fresh process on the same blobs (saved once as .npy): seconds, the inertia of
its final centroids (recomputed the same way for all), and peak RSS beyond the loaded data. Candidates:
semcore.cluster.kmeans (torch; k-means++ as scikit-learn), scikit-learn KMeans (the authors' choice,
n_init 10), MiniBatchKMeans, and faiss when it is installed. "semcore:N" runs semcore with N restarts:
restarts are cheap (on a sample), so more of them can buy the inertia scikit-learn reaches.
Usage: python benchmarks/bench_kmeans.py [--n 200000] [--dim 512] [--k 100] [--n-init 10]
       [--candidates semcore,semcore:30,sklearn,minibatch,faiss]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from semcore import cluster


def status_mb(field: str) -> float:
    """VmRSS or VmHWM (its peak; unlike ru_maxrss, not inherited from the parent across exec)."""
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field)) / 1024


def run(candidate: str, data_path: str, k: int, n_init: int) -> dict:
    x = np.load(data_path)
    base = status_mb("VmRSS")
    start = time.perf_counter()
    if candidate.startswith("semcore"):  # "semcore:30": with 30 restarts
        restarts = int(candidate.partition(":")[2] or n_init)
        centroids = cluster.kmeans(x, k, n_init=restarts, seed=0).centroids
    elif candidate == "sklearn":
        from sklearn.cluster import KMeans
        centroids = KMeans(k, n_init=n_init, random_state=0).fit(x).cluster_centers_
    elif candidate == "minibatch":
        from sklearn.cluster import MiniBatchKMeans
        centroids = MiniBatchKMeans(k, n_init=n_init, batch_size=4096, random_state=0).fit(x).cluster_centers_
    elif candidate == "faiss":
        import faiss
        model = faiss.Kmeans(x.shape[1], k, niter=50, nredo=n_init, seed=0)
        model.train(x)
        centroids = model.centroids
    seconds = time.perf_counter() - start
    peak = status_mb("VmHWM")
    xt = torch.from_numpy(x)
    inertia = cluster.nearest_centers(xt, torch.as_tensor(centroids, dtype=torch.float32), (xt * xt).sum(1))[1].double().sum().item()
    return dict(candidate=candidate, seconds=seconds, inertia=inertia, extra_mb=peak - base, data_mb=x.nbytes / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--n-init", type=int, default=10)
    parser.add_argument("--candidates", default="semcore,semcore:30,sklearn,minibatch,faiss")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args.child[0], args.child[1], args.k, args.n_init)))
        return

    from sklearn.datasets import make_blobs

    with tempfile.TemporaryDirectory() as tmp:
        data_path = f"{tmp}/blobs.npy"
        x, _ = make_blobs(args.n, args.dim, centers=args.k, cluster_std=4.0, random_state=0)
        np.save(data_path, x.astype(np.float32))
        del x
        print(f"{args.n} × {args.dim} float32 blobs, k = {args.k}, n_init = {args.n_init}, {torch.get_num_threads()} threads")
        results = {}
        for candidate in args.candidates.split(","):
            if candidate == "faiss" and subprocess.run([sys.executable, "-c", "import faiss"], capture_output=True).returncode:
                print("faiss: not installed (pip install faiss-cpu), skipped")
                continue
            out = subprocess.run([sys.executable, __file__, "--k", str(args.k), "--n-init", str(args.n_init),
                                  "--child", candidate, data_path], capture_output=True, text=True, check=True)
            results[candidate] = r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{candidate:>10}: {r['seconds']:8.1f} s  inertia {r['inertia']:.6g}  "
                  f"peak beyond data {r['extra_mb']:7.0f} MB ({r['extra_mb'] / r['data_mb']:.2f}× the data)", flush=True)
    ours, reference = results["semcore"], results.get("sklearn")
    if reference:
        for name, r in results.items():
            if name.startswith("semcore"):
                print(f"{name} vs scikit-learn: {reference['seconds'] / r['seconds']:.1f}× faster, "
                      f"inertia ratio {r['inertia'] / reference['inertia']:.4f}")
    # Lloyd and k-means++ both scale as n · k · d: project to the paper's ImageNet φ at k = 1,000.
    scale = (1_281_167 / args.n) * (1000 / args.k) * (512 / args.dim)
    print(f"projected for 1.28M × 512, k = 1,000 on this machine: {ours['seconds'] * scale / 3600:.1f} h "
          f"(n_init {args.n_init}, same iterations per run assumed; a GPU divides this by its GEMM speed-up)")


if __name__ == "__main__":
    main()
