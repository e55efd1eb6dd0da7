"""Adapter for rule `gist_scores`: the gist classifier's verdict on the self-guided and unconditional samples
(agreement with each conditioner's class) and their KID against real test images; failed samples (NaN/inf)
are left out of both, and counted in the agreement table (n_failed)."""
import logging
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from semcore import figures, gist
from semcore.images import decode_png
from semcore.joblog import job_log
from semcore.shards import images_by_key
from semcore.tables import GIST_AGREEMENT, GIST_QUALITY, write_table

job_log(snakemake)
torch.set_num_threads(snakemake.threads)

p = snakemake.params
net = gist.GistNet.load(snakemake.input.classifier)
manifest = pd.read_parquet(snakemake.input.manifest)
truth, _ = gist.gist_targets(manifest, net.config.hue_bins)
labels = manifest[manifest.status == "written"].set_index("key").label

# `failed`: the sample became NaN/inf while drawn (semcore.sample.score); it is left out of the scores, counted.
columns = ["method", "target", "key", "sample_id", "failed", "png"]
samples = pq.read_table(snakemake.input.samples, columns=columns).to_pandas()
if samples.failed.any():
    logging.warning("%d failed sample(s) left out of the gist scores: %s", samples.failed.sum(),
                    samples[samples.failed].groupby("method").size().to_dict())
sample_images = torch.from_numpy(np.stack([decode_png(png) for png in samples.png])).permute(0, 3, 1, 2)
conditioner_keys = list(samples.key.unique())
found = images_by_key(snakemake.input.shards, manifest, conditioner_keys)
conditioner_images = torch.from_numpy(np.stack([found[k] for k in conditioner_keys])).permute(0, 3, 1, 2)
# Real test images, the conditioners left out: the guided samples copy them, they are no independent reference.
test_keys, test_images = gist.split_images(snakemake.input.shards, manifest[~manifest.key.isin(conditioner_keys)],
                                           "test", p.max_test_images, p.seed)
logging.info("%d samples (%s) of %d targets; %d real test images", len(samples),
             samples.method.value_counts().to_dict(), len(conditioner_keys), len(test_keys))

table = gist.agreement(samples, gist.predict(net, sample_images), truth, labels,
                       gist.predict(net, test_images).set_axis(test_keys),
                       gist.predict(net, conditioner_images).set_axis(conditioner_keys),
                       max_real=p.max_real_same_class, seed=p.seed)
write_table(table, snakemake.output.agreement, GIST_AGREEMENT)
gist.agreement_figure(table, snakemake.output.figure)
print(table[table.target.isna()].pivot(index="head", columns="measure", values="value").to_string(float_format="%.3f"),
      file=sys.stderr)

sample_features = gist.features(net, sample_images)
kept = {method: (samples.method == method).to_numpy() & ~samples.failed.to_numpy()
        for method in samples.method.unique()}
quality = gist.kid({method: sample_features[rows] for method, rows in kept.items() if rows.sum() >= 2},
                   gist.features(net, test_images), p.kid_subsets, p.seed)
quality["n_failed"] = quality.set.map(samples[samples.failed].method.value_counts()).fillna(0).astype(int)
write_table(quality, snakemake.output.quality, GIST_QUALITY)
figures.html_tables(figures.gist_summary(table, quality), snakemake.output.summary)
print(quality.to_string(float_format="%.4g"), file=sys.stderr)
