"""Adapter for rule `neighbours`: the first test images' nearest neighbours in φ space and in pixel space.

Each space is read a φ file or a batch of images at a time (its first cluster.max_images images, as
k-means takes them), keeping each query's nearest rows so far: memory holds one chunk, not the space
(200,000 ImageNet images are 9.8 GB of pixels)."""
import sys
from functools import partial

import numpy as np
import pandas as pd

from semcore import figures
from semcore.cluster import nearest_neighbours
from semcore.phi import read_phi
from semcore.progress import job_log
from semcore.shards import images_by_key, read_batches, shard_paths, write_parquet

job_log(snakemake)
p = snakemake.params


def phi_chunks(sigma):
    """(key, split, label table, φ rows) of each φ file in order, the first max_images rows in all."""
    taken = 0
    for path in sorted(snakemake.input.phi):
        if p.max_images is not None and taken >= p.max_images:
            return
        meta, x = read_phi([path], sigma)
        keep = len(x) if p.max_images is None else p.max_images - taken
        taken += len(x[:keep])
        yield meta[:keep], x[:keep]


def pixel_chunks():
    """The same for the images as vectors in [0, 1], in shard order."""
    paths = sorted(shard_paths(snakemake.input.shards, "train") + shard_paths(snakemake.input.shards, "test"))
    for metas, images in read_batches(paths, 1024, p.max_images):
        pixels = images.reshape(len(images), -1).numpy().astype(np.float32) / 255
        yield pd.DataFrame(metas)[["key", "split", "label"]], pixels


def search(chunks):
    """(meta of every row, query rows, their neighbours' rows, distances): two passes over the chunks, one
    for the queries (the first test rows), one merging each chunk's nearest rows into the best so far."""
    query_x, query_rows, offset = [], [], 0
    for meta, x in chunks():
        tests = np.flatnonzero(meta.split.to_numpy() == "test")[:p.queries - len(query_rows)]
        query_x += list(x[tests])
        query_rows += list(tests + offset)
        offset += len(x)
        if len(query_rows) == p.queries:
            break
    query_x, query_rows = np.stack(query_x), np.array(query_rows)
    metas, offset = [], 0
    best = np.empty((len(query_rows), 0), dtype=np.int64), np.empty((len(query_rows), 0), dtype=np.float32)
    for meta, x in chunks():
        inside = (query_rows >= offset) & (query_rows < offset + len(x))
        found, dist = nearest_neighbours(query_x, x, min(p.neighbours, len(x)),
                                         exclude_self=np.where(inside, query_rows - offset, -1))
        indices, distances = np.hstack([best[0], found + offset]), np.hstack([best[1], dist])
        order = np.argsort(distances, axis=1, kind="stable")[:, :p.neighbours]
        best = np.take_along_axis(indices, order, 1), np.take_along_axis(distances, order, 1)
        metas.append(meta)
        offset += len(x)
    return pd.concat(metas, ignore_index=True), query_rows, *best


spaces = {f"φ σ={sigma:g}": partial(phi_chunks, sigma) for sigma in p.sigmas} | {"pixels": pixel_chunks}
rows = []
for space, chunks in spaces.items():
    meta, queries, indices, distances = search(chunks)
    for query, found, dist in zip(queries, indices, distances):
        rows.append(pd.DataFrame({
            "query": meta.key.iloc[query], "space": space, "rank": np.arange(1, len(found) + 1),
            "neighbour": meta.key.to_numpy()[found], "distance": dist,
            "same_label": meta.label.to_numpy()[found] == meta.label.iloc[query]}))
table = pd.concat(rows, ignore_index=True)
write_parquet(table, snakemake.output.table)

# Queries are the first test images in shard order, the same in every space.
keys = list(dict.fromkeys(table["query"].tolist() + table.neighbour.tolist()))
manifest = pd.read_parquet(snakemake.input.manifest)
images = images_by_key(snakemake.input.shards, manifest, keys)
names = manifest.set_index("key").label_name
by_query = table.groupby(["query", "space"]).neighbour.agg(list)
queries = table["query"].unique()
figures.montage([(f"query {n + 1}: {space}", [images[query]] + [images[k] for k in by_query[query, space]])
                 for n, query in enumerate(queries) for space in spaces], snakemake.output.figure,
                columns=["query", *(str(i + 1) for i in range(p.neighbours))],
                labels=[[names[query]] + [names[k] for k in by_query[query, space]] for query in queries for space in spaces],
                title="Nearest neighbours of test images")
print(table.groupby("space").same_label.mean().to_string(), file=sys.stderr)
