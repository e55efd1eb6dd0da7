"""Adapter for rules `phi` and `phi_snapshot` (consecutive shards → φ of the middle block, of the trained
network or of a snapshot) and `block_means` (a subset → ā of every block)."""
import hashlib
from pathlib import Path

import torch

from semcore import phi, shards
from semcore.joblog import job_log
from semcore.model import UNetFlex
from semcore.runtime import Precision, resolve_device

job = job_log(snakemake)
torch.set_num_threads(snakemake.threads)

p = snakemake.params
device = resolve_device(p.device)
precision = Precision(**p.precision)
precision.apply(device)
model_path = Path(snakemake.input.model, p.snapshot or "")  # a snapshot: the file of its step in the folder
model = UNetFlex.from_pretrained(model_path, map_location=device).to(device, memory_format=torch.channels_last)
checkpoint_sha256 = hashlib.sha256(model_path.read_bytes()).hexdigest()
shard_input = snakemake.input.shards  # Snakemake gives a single path as a string, several as a list
paths = [shard_input] if isinstance(shard_input, str) else sorted(shard_input)
metadata = dict(model=str(model_path), checkpoint_sha256=checkpoint_sha256, seed=p.seed, shards=",".join(Path(s).name for s in paths))

if p.all_blocks:
    phi.write_block_means(model, shards.read_batches(paths, p.batch_images, limit=p.max_images), snakemake.output[0],
                          sigmas=p.sigmas, n_noise=p.n_noise, device=device, metadata=metadata, precision=precision,
                          generator=phi.seeded_generator(p.seed, Path(paths[0]).stem, device))
else:
    phi.write_phi(model, paths, snakemake.output[0], sigmas=p.sigmas, n_noise=p.n_noise, seed=p.seed,
                  batch_images=p.batch_images, device=device, metadata=metadata, precision=precision)
