"""Adapter for rule `kmeans`: one feature set, one k → assignments, centroids, a montage per cluster."""
import sys

import pandas as pd
import pyarrow as pa
import torch

from semcore import cluster, figures
from semcore.features import read_features
from semcore.joblog import job_log
from semcore.runtime import resolve_device
from semcore.shards import images_by_key
from semcore.tables import ASSIGNMENTS, centroids_schema, vectors, write_table

job = job_log(snakemake)
torch.set_num_threads(snakemake.threads)
p, k = snakemake.params, int(snakemake.wildcards.k)

meta, x = read_features(snakemake.wildcards.features, snakemake.input.features, p.max_images)
if k > len(x):
    raise ValueError(f"cluster.ks: k={k} exceeds the {len(x)} images of {snakemake.wildcards.features}")
if p.normalize:
    x = cluster.normalized(x)
result = cluster.kmeans(x, k, n_init=p.n_init, max_iter=p.max_iter, tol=p.tol, seed=p.seed,
                        device=resolve_device(p.device))
print(f"{len(x)} × {x.shape[1]}, k={k}: inertia {result.inertia:.6g} after {result.n_iter} iterations", file=sys.stderr)

assignments = meta.assign(cluster=result.labels, distance=result.distances)
write_table(assignments, snakemake.output.assignments, ASSIGNMENTS)
sizes = assignments.cluster.value_counts().reindex(range(k), fill_value=0)
centroids = pa.table({"cluster": pa.array(range(k), pa.int32()), "size": sizes.to_numpy(),
                      "centroid": vectors(result.centroids)})
write_table(centroids, snakemake.output.centroids, centroids_schema(x.shape[1]))

# The paper's cluster figures: the largest clusters, each by the members closest to its centroid.
shown = sizes.sort_values(ascending=False, kind="stable").index[:p.montage_clusters]
members = {c: group.nsmallest(p.montage_members, "distance").key.tolist()
           for c, group in assignments[assignments.cluster.isin(shown)].groupby("cluster")}
manifest = pd.read_parquet(snakemake.input.manifest)
images = images_by_key(snakemake.input.shards, manifest, sum(members.values(), []))
names = manifest.set_index("key").label_name
figures.montage([(f"cluster {c}: {sizes[c]} images", [images[key] for key in members[c]]) for c in shown],
                snakemake.output.montage, columns=[str(i + 1) for i in range(p.montage_members)],
                labels=[[names[key] for key in members[c]] for c in shown],
                title=f"k-means of {figures.feature_set_name(snakemake.wildcards.features)}, k = {k}")
