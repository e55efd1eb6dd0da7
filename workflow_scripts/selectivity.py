"""Adapter for rule `selectivity`: per-channel PR across images, the selective split, top-image montage."""
import json
import sys

import numpy as np
import pandas as pd

from semcore import figures, shards, stats
from semcore.files import atomic
from semcore.phi import read_phi
from semcore.progress import job_log

job_log(snakemake)
p = snakemake.params
meta, phi = read_phi(snakemake.input.phi, p.sigma)
table, threshold, bimodal = stats.channel_table(phi, p.active_fraction)
shards.write_parquet(table, snakemake.output.table)
summary = dict(sigma=p.sigma, threshold=threshold, bimodal=bimodal, channels=len(table),
               selective=int(table.selective.sum()), dead=int(table.pr.isna().sum()))
with atomic(snakemake.output.summary) as tmp:
    tmp.write_text(json.dumps(summary, indent=2))
print(summary, file=sys.stderr)
figures.channel_pr_histogram(table, threshold, snakemake.output.histogram)

# The most selective channels (lowest PR) among those active on a montage's worth of images (a channel
# alive on one image only has PR ≈ 0 and shows nothing), each with the images that activate it most.
populated = table.selective & (table.active_fraction * len(phi) >= p.montage_images)
channels = table[populated].nsmallest(p.montage_channels, "pr").channel.to_numpy()
top = {c: np.argsort(-phi[:, c])[: p.montage_images] for c in channels}
keys = meta.key.to_numpy()
manifest = pd.read_parquet(snakemake.input.manifest)
images = shards.images_by_key(snakemake.input.shards, manifest, [keys[i] for rows in top.values() for i in rows])
names = manifest.set_index("key").label_name
figures.montage([(f"channel {c} (PR {table.pr[c]:.2f})", [images[keys[i]] for i in rows]) for c, rows in top.items()],
                snakemake.output.montage, columns=[str(i + 1) for i in range(p.montage_images)],
                labels=[[names[keys[i]] for i in rows] for rows in top.values()],
                title=f"Images that activate a selective channel most (σ = {p.sigma:g})")
