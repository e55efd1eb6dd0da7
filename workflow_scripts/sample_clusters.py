"""Adapter for rule `sample_clusters`: self-guided samples toward the centroids of the largest k-means clusters
of φ, scored against their centroid, to one Parquet table; a figure of each cluster's closest members beside
its samples."""
import logging

import numpy as np
import pandas as pd
import torch

from semcore import cluster, figures, sample, shards, tables
from semcore.joblog import job_log
from semcore.model import UNetFlex
from semcore.phi import seeded_generator
from semcore.runtime import resolve_device

job = job_log(snakemake)
torch.set_num_threads(snakemake.threads)

p = snakemake.params
device = resolve_device(p.device)
model = UNetFlex.from_pretrained(snakemake.input.model, map_location=device)
model = model.to(device, memory_format=torch.channels_last).eval()
sizes = pd.read_parquet(snakemake.input.centroids, columns=["cluster", "size"]).set_index("cluster")["size"]
chosen = sizes.sort_values(ascending=False, kind="stable").index[:p.cluster_count].tolist()  # ties: the lower id
ids, centroids = cluster.read_centroids(snakemake.input.centroids, chosen)
target = sample.Target(vectors=centroids.to(device), n_noise=p.n_noise, top_k=p.top_k)
start = sample.start_image(shards.shard_paths(snakemake.input.shards, "train"), p.start)
generator = seeded_generator(p.seed, f"clusters-{p.features}-k{p.k}", device)

# Scored at the clustered σ: a centroid is a mean of φ there, so φ error and nearest cluster compare like with like.
table, samples = sample.sample_and_score(
    model, target, p.samples_per_cluster, start, generator=generator, score_sigma=p.sigma,
    train_phi=snakemake.input.train_phi, phi_sigmas=p.phi_sigmas, phi_n_noise=p.phi_n_noise,
    guided=True, algorithm=p.algorithm, schedule=p.schedule, ascent_options=p.ascent, matching=p.matching)
all_ids, all_centroids = cluster.read_centroids(snakemake.input.centroids)
nearest, _ = cluster.nearest_neighbours(np.stack(table.phi), all_centroids.numpy(), 1)
own = ids[table.target.to_numpy()]
table = table.drop(columns=["target", "pixel_distance"]).assign(  # no conditioning image: no pixel distance
    features=p.features, k=p.k, cluster=own, cluster_size=sizes.loc[own].to_numpy(), algorithm=p.algorithm,
    nearest_cluster=all_ids[nearest[:, 0]], top_k=p.top_k)
landed = table.cluster == table.nearest_cluster
logging.info("per cluster: mean φ error, share of samples nearest their own centroid\n%s",
             table.assign(landed=landed).groupby("cluster", sort=False)[["phi_error", "landed"]].mean())
drawn = tables.as_uint8(samples.images)
tables.write_table(tables.to_arrow(table, drawn), snakemake.output.table,
                   tables.cluster_samples_schema(model.config.channels[-1]))

assignments = pd.read_parquet(snakemake.input.assignments, columns=["key", "cluster", "distance"])
members = {c: group.nsmallest(p.members, "distance").key.tolist()
           for c, group in assignments[assignments.cluster.isin(chosen)].groupby("cluster")}
images = shards.images_by_key(snakemake.input.shards, pd.read_parquet(snakemake.input.manifest),
                              sum(members.values(), []))
figures.cluster_samples([(f"cluster {c}: {sizes.loc[c]} images", [images[key] for key in members[c]],
                          list(drawn[own == c])) for c in chosen], snakemake.output.figure,
                        title=f"Samples toward the centroids of k-means of {figures.feature_set_name(p.features)}, "
                              f"k = {p.k}: {landed.sum()} of {len(table)} nearest their own centroid")
