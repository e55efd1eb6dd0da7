"""Adapter for rule `neighbours`: the first test images' nearest neighbours in φ space and in pixel space."""
import sys

import numpy as np
import pandas as pd

from semcore import figures
from semcore.cluster import nearest_neighbours
from semcore.features import read_features
from semcore.shards import images_by_key, shard_paths, write_parquet

sys.stderr = open(snakemake.log[0], "w")
p = snakemake.params

spaces = {f"φ σ={sigma:g}": read_features(f"phi-s{sigma:g}", snakemake.input.phi, p.max_images) for sigma in p.sigmas}
spaces["pixels"] = read_features("pixels", shard_paths(snakemake.input.shards, "train") + shard_paths(snakemake.input.shards, "test"), p.max_images)
rows = []
for space, (meta, x) in spaces.items():
    queries = np.flatnonzero(meta.split.to_numpy() == "test")[:p.queries]
    indices, distances = nearest_neighbours(x[queries], x, p.neighbours, exclude_self=queries)
    for query, found, dist in zip(queries, indices, distances):
        rows.append(pd.DataFrame({
            "query": meta.key.iloc[query], "space": space, "rank": np.arange(1, len(found) + 1),
            "neighbour": meta.key.to_numpy()[found], "distance": dist,
            "same_label": meta.label.to_numpy()[found] == meta.label.iloc[query]}))
table = pd.concat(rows, ignore_index=True)
write_parquet(table, snakemake.output.table)

# Queries are the first test images in shard order, the same in every space.
keys = list(dict.fromkeys(table["query"].tolist() + table.neighbour.tolist()))
images = images_by_key(snakemake.input.shards, pd.read_parquet(snakemake.input.manifest), keys)
by_query = table.groupby(["query", "space"]).neighbour.agg(list)
figures.montage([(f"{query} — {space}", [images[query]] + [images[k] for k in by_query[query, space]])
                 for query in table["query"].unique() for space in spaces], snakemake.output.figure)
print(table.groupby("space").same_label.mean().to_string(), file=sys.stderr)
