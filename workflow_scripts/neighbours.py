"""Adapter for rule `neighbours`: the first test images' nearest neighbours in φ space and in pixel space.

Each space is read a φ file or a batch of images at a time (its first cluster.max_images images, as
k-means takes them), keeping each query's nearest rows so far: memory holds one chunk, not the space
(200,000 ImageNet images are 9.8 GB of pixels)."""
import sys
from functools import partial

import numpy as np
import pandas as pd

from semcore import figures
from semcore.cluster import nearest_in_chunks
from semcore.joblog import job_log
from semcore.phi import phi_chunks
from semcore.plan.sizes import NEIGHBOUR_BATCH
from semcore.shards import images_by_key, read_batches, shard_paths
from semcore.tables import NEIGHBOURS, write_table

job_log(snakemake)
p = snakemake.params


def phi_rows(sigma):
    """(key, split, label table, φ rows) of each φ file in order, the first max_images rows in all."""
    taken = 0
    for meta, x in phi_chunks(snakemake.input.phi, sigma):
        if p.max_images is not None and taken >= p.max_images:
            return
        keep = len(x) if p.max_images is None else p.max_images - taken
        taken += len(x[:keep])
        yield meta[:keep], x[:keep]


def pixel_chunks():
    """The same for the images as vectors in [0, 1], in shard order."""
    paths = sorted(shard_paths(snakemake.input.shards, "train") + shard_paths(snakemake.input.shards, "test"))
    for metas, images in read_batches(paths, NEIGHBOUR_BATCH, p.max_images):
        pixels = images.reshape(len(images), -1).numpy().astype(np.float32) / 255
        yield pd.DataFrame(metas)[["key", "split", "label"]], pixels


def first_tests(chunks):
    """The queries: the first `queries` test rows, (their φ or pixels, their rows counted over the chunks,
    their key, split, label table)."""
    x, rows, metas, offset = [], [], [], 0
    for meta, chunk in chunks():
        tests = np.flatnonzero(meta.split.to_numpy() == "test")[:p.queries - len(rows)]
        x.append(chunk[tests])
        rows += list(tests + offset)
        metas.append(meta.iloc[tests])
        offset += len(chunk)
        if len(rows) == p.queries:
            break
    return np.concatenate(x), np.array(rows), pd.concat(metas, ignore_index=True)


spaces = {f"φ σ={sigma:g}": partial(phi_rows, sigma) for sigma in p.sigmas} | {"pixels": pixel_chunks}
found = []
for space, chunks in spaces.items():
    query_x, query_rows, query_meta = first_tests(chunks)
    neighbours = nearest_in_chunks(query_x, chunks(), p.neighbours, exclude=query_rows)  # a second pass
    query = neighbours["query"].to_numpy()
    found.append(pd.DataFrame({
        "query": query_meta.key.to_numpy()[query], "space": space, "rank": neighbours["rank"].to_numpy() + 1,
        "neighbour": neighbours.key.to_numpy(), "distance": neighbours.distance.to_numpy().astype(np.float32),
        "same_label": neighbours.label.to_numpy() == query_meta.label.to_numpy()[query]}))
table = pd.concat(found, ignore_index=True)
write_table(table, snakemake.output.table, NEIGHBOURS)

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
