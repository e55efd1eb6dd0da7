"""Adapter for rule `train`: shards → trained denoiser (resuming a killed run) + training curve."""
import logging
import sys

import torch

from semcore import figures
from semcore.model import UNetConfig
from semcore.train import TrainConfig, read_log, train

sys.stderr = open(snakemake.log[0], "a")  # appended: a resumed run keeps the killed run's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
torch.set_num_threads(snakemake.threads)

p = snakemake.params
train(UNetConfig(in_channels=p.in_channels, **p.model), TrainConfig(**p.train, device=p.device), snakemake.input.shards,
      p.run_dir, snakemake.output.model)
figures.training_curve(read_log(p.run_dir), snakemake.output.curve)
