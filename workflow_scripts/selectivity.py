"""Adapter for rule `selectivity`: per-channel PR across images, the selective split, top-image montage."""
import json
import sys

import numpy as np
import pandas as pd

from semcore import figures, shards, stats
from semcore.files import atomic
from semcore.joblog import job_log
from semcore.phi import read_phi
from semcore.tables import CHANNELS, write_table

job_log(snakemake)
p = snakemake.params
meta, phi = read_phi(snakemake.input.phi, p.sigma)
table, summary = stats.channel_table(phi, p.active_fraction, p.rule, p.alpha, p.resamples, p.confidence, p.seed)
write_table(table, snakemake.output.table, CHANNELS)
summary = dict(sigma=p.sigma, **summary)
with atomic(snakemake.output.summary) as tmp:
    tmp.write_text(json.dumps(summary, indent=2))
print(summary, file=sys.stderr)
figures.channel_pr_histogram(table, summary, snakemake.output.histogram)

# The most selective channels (lowest PR) among those active on a montage's worth of images (a channel
# alive on one image only has PR ≈ 0 and shows nothing), each with the images that activate it most;
# when none of those is selective, the lowest-PR such channels, titled as not selective.
populated = table.active_fraction * len(phi) >= p.montage_images
if (table.selective & populated).any():
    shown = table[table.selective & populated]
    title = f"Images that activate a selective channel most (σ = {p.sigma:g})"
else:
    shown = table[populated]
    if summary["selective"]:
        why = f"None of the {summary['selective']} selective channels is active on {p.montage_images} images"
    elif p.rule == "test":
        why = f"No channel is selective (bimodality {summary['verdict']})"
    elif np.isfinite(summary["threshold"]):
        why = f"No channel is selective (none below {summary['threshold']:.2f})"
    else:
        why = f"No channel is selective (rule {p.rule}: no threshold)"
    title = f"{why}: images that activate the lowest-PR channels most, none of them selective (σ = {p.sigma:g})"
channels = shown.nsmallest(p.montage_channels, "pr").channel.to_numpy()
top = {c: np.argsort(-phi[:, c])[: p.montage_images] for c in channels}
keys = meta.key.to_numpy()
manifest = pd.read_parquet(snakemake.input.manifest)
images = shards.images_by_key(snakemake.input.shards, manifest, [keys[i] for rows in top.values() for i in rows])
names = manifest.set_index("key").label_name
figures.montage([(f"channel {c} (PR {table.pr[c]:.2f})", [images[keys[i]] for i in rows]) for c, rows in top.items()],
                snakemake.output.montage, columns=[str(i + 1) for i in range(p.montage_images)],
                labels=[[names[keys[i]] for i in rows] for rows in top.values()],
                title=title)
