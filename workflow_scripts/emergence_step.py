"""Adapter for rule `emergence_step`: φ of the clustered images under one snapshot's weights → its mean
PR, k-means and probe scores, and the snapshot's test PSNR (semcore.emergence)."""
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from semcore import emergence, shards
from semcore.features import read_features
from semcore.joblog import job_log
from semcore.model import UNetFlex
from semcore.runtime import as_model_input, resolve_device
from semcore.shards import factor_table
from semcore.tables import EMERGENCE, write_table
from semcore.train import psnr_table

job = job_log(snakemake)
torch.set_num_threads(snakemake.threads)
p = snakemake.params
device = resolve_device(p.device)
started = time.perf_counter()

factors = factor_table(pd.read_parquet(snakemake.input.manifest))
frames = []
for sigma in p.sigmas:
    meta, phi = read_features(f"phi-s{sigma:g}", snakemake.input.features, p.max_images)
    frames.append(emergence.phi_scores(meta, phi, factors.reindex(meta.key.to_numpy()), ks=p.ks, normalize=p.normalize,
                                       kmeans_options=p.kmeans, probe_max_iter=p.probe_max_iter, seed=p.seed,
                                       device=device).assign(sigma=sigma))
model = UNetFlex.from_pretrained(Path(snakemake.input.snapshots, p.snapshot), map_location=device).eval()
images = as_model_input(shards.first_images(snakemake.input.shards, "test", p.eval_images), device)
frames.append(emergence.psnr_rows(psnr_table(model, images, p.eval_sigmas, p.seed)))
table = pd.concat(frames, ignore_index=True).assign(step=p.step)[emergence.COLUMNS]
write_table(table, snakemake.output[0], EMERGENCE)
print(f"step {p.step}: {len(meta)} images, {len(snakemake.input.features)} φ files, {device}, "
      f"{time.perf_counter() - started:.1f} s\n{table.to_string(float_format='%.3f')}", file=sys.stderr)
