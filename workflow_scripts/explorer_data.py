"""Adapter for rule `explorer_data`: what the explorer page shows of this run, in one JSON bundle (the map,
colourings, neighbours, clusters, channels, thumbnails and samples of the mapped images)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from semcore import explorer
from semcore.files import atomic
from semcore.joblog import job_log
from semcore.phi import read_phi
from semcore.shards import read_batches, shard_paths

job_log(snakemake)
p, inputs = snakemake.params, snakemake.input

meta, phi = read_phi(inputs.phi, p.sigma)
meta, phi = meta[:p.max_images].reset_index(drop=True), phi[:p.max_images]
keys = meta.key.to_numpy()
rows = pd.Series(np.arange(len(keys)), index=keys)


def aligned(table: pd.DataFrame, what: str) -> pd.DataFrame:
    """A table of the mapped images in their order (k-means' assignments cover the clustered images)."""
    table = table.set_index("key").reindex(keys)
    if table.isna().all(axis=1).any():
        raise ValueError(f"{what}: no row for {table.index[table.isna().all(axis=1)][0]!r} of the map")
    return table.reset_index()


maps = aligned(pd.read_parquet(inputs.embedding), inputs.embedding)
neighbours = {}
for path in inputs.neighbours:
    graph = pd.read_parquet(path)
    if not np.array_equal(graph.key.unique(), keys):
        raise ValueError(f"{path}: its images are not the map's (rerun neighbour_graph)")
    neighbours[Path(path).stem] = (rows[graph.neighbour].to_numpy().reshape(len(keys), -1),
                                   graph.distance.to_numpy().reshape(len(keys), -1))
assignments = {k: aligned(pd.read_parquet(path), path) for k, path in zip(p.ks, inputs.assignments)}


def images():
    """The mapped images in the map's order, a batch at a time."""
    paths, taken = sorted(shard_paths(inputs.shards, "train") + shard_paths(inputs.shards, "test")), 0
    for metas, batch in read_batches(paths, 1024, len(keys)):
        if [m["key"] for m in metas] != list(keys[taken:taken + len(metas)]):
            raise ValueError(f"the shards in {inputs.shards} are not in the order of the φ files")
        taken += len(metas)
        yield batch.permute(0, 2, 3, 1).numpy()


samples = pd.read_parquet(inputs.samples, columns=["method", "key", "png", "phi_error"])
bundle = explorer.bundle(
    p.name, meta, phi, pd.read_parquet(inputs.manifest), maps, neighbours, assignments,
    pd.read_parquet(inputs.channels), explorer.sprite_sheets(images(), len(keys), p.thumbnail, p.quality),
    samples[samples.method == "self-guided"], sigma=p.sigma, active_fraction=p.active_fraction,
    members=p.cluster_members, channel_images=p.channel_images)
with atomic(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps(bundle, separators=(",", ":")))
