"""Adapter for rules `sample` (self-guided) and `sample_unconditional` (the baseline): one batch of targets,
its samples and their scores, to one Parquet table."""
import logging
import time

import pandas as pd
import torch

from semcore import sample, shards, tables
from semcore.joblog import job_log
from semcore.model import UNetFlex
from semcore.phi import seeded_generator
from semcore.runtime import resolve_device

job = job_log(snakemake)
torch.set_num_threads(snakemake.threads)

p = snakemake.params
batch = int(snakemake.wildcards.batch)
device = resolve_device(p.device)
model = UNetFlex.from_pretrained(snakemake.input.model, map_location=device).to(device, memory_format=torch.channels_last).eval()
keys, images = sample.target_images(snakemake.input.shards, pd.read_parquet(snakemake.input.manifest), p.targets,
                                    batch, p.targets_per_job)
start = sample.start_image(shards.shard_paths(snakemake.input.shards, "train"), p.start)
method = "self-guided" if p.guided else "unconditional"
generator = seeded_generator(p.seed, f"{method}-{batch}", device)

began = time.perf_counter()
target, rows, samples = sample.sample_images(
    model, images, p.samples_per_target, start, n_noise=p.n_noise, top_k=p.top_k, generator=generator,
    guided=p.guided, algorithm=p.algorithm, schedule=p.schedule, ascent_options=p.ascent, matching=p.matching)
logging.info("%s: %d samples in %.1f s; network calls (kind, batch): %s", method, len(rows),
             time.perf_counter() - began, dict(samples.calls))
# Nearest training images are searched in the φ files at the phi.sigmas value closest to the scoring σ.
train_sigma = min(p.phi_sigmas, key=lambda s: abs(s - p.score_sigma))
table = sample.score(model, samples, target, rows, sigma=p.score_sigma, generator=generator,
                     train_phi=snakemake.input.train_phi, train_sigma=train_sigma, train_n_noise=p.phi_n_noise)
table.insert(0, "method", method)
table.insert(1, "algorithm", p.algorithm)
table.insert(3, "key", [keys[i] for i in table.target])
table["target"] += batch * p.targets_per_job
table["top_k"] = p.top_k
if table.failed.any():
    logging.warning("samples that became NaN/inf:\n%s", table[table.failed][["key", "failure"]].to_string())
logging.info("\n%s", table.groupby("key")[["phi_error", "pixel_distance", "diversity", "nn_phi_distance"]].mean())
arrow = tables.to_arrow(table, tables.as_uint8(samples.images))
tables.write_table(arrow, snakemake.output[0], tables.samples_schema(model.config.channels[-1]))
