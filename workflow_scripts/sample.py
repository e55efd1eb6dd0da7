"""Adapter for rules `sample` (self-guided) and `sample_unconditional` (the baseline): one batch of targets,
its samples and their scores, to one Parquet table."""
import logging

import pandas as pd
import torch

from semcore import sample, shards, tables
from semcore.joblog import job_log
from semcore.model import UNetFlex
from semcore.phi import seeded_generator
from semcore.runtime import as_model_input, resolve_device

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

target = sample.Target(images=as_model_input(images, device), n_noise=p.n_noise, top_k=p.top_k)
table, samples = sample.sample_and_score(
    model, target, p.samples_per_target, start, generator=generator, score_sigma=p.score_sigma,
    train_phi=snakemake.input.train_phi, phi_sigmas=p.phi_sigmas, phi_n_noise=p.phi_n_noise,
    guided=p.guided, algorithm=p.algorithm, schedule=p.schedule, ascent_options=p.ascent, matching=p.matching)
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
