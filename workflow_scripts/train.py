"""Adapter for rule `train`: shards → trained denoiser (resuming a killed run), its snapshots, the training
curve; or, with model.pretrained, the imported network in its place (and the untrained one as step 0)."""
import logging

import torch

from semcore import figures
from semcore.joblog import job_log
from semcore.model import UNetConfig
from semcore.plan.sizes import training_images
from semcore.runtime import Precision, resolve_device
from semcore.train import TrainConfig, import_pretrained, launch, read_log, train

job = job_log(snakemake, append=True)  # a resumed run keeps the killed run's log
torch.set_num_threads(snakemake.threads)

p = snakemake.params
model_config, config = UNetConfig(in_channels=p.in_channels, **p.model), TrainConfig(**p.train, device=p.device)
resolve_device(config.device)
if p.pretrained:
    import_pretrained(model_config, config, p.pretrained["path"], p.pretrained["format"], snakemake.input.shards,
                      p.run_dir, snakemake.output.model, snakemake.output.snapshots)
else:
    train_images = training_images(snakemake.input.manifest)
    config = config.in_steps(train_images)
    precision = Precision(**p.precision)  # bf16 autocast, TF32, cuDNN benchmark: recorded in the run directory
    logging.info("%d training images, batch %d: %d steps per epoch; %d steps, lr halved every %d",
                 train_images, config.batch_size, config.steps_per_epoch(train_images), config.steps,
                 config.lr_halve_every)
    # One DDP process per GPU the job was given (the `gpu` resource a cluster profile sets; gloo processes
    # where the job runs on the CPU on purpose, device: cpu); train.processes, when set, overrides it.
    processes = config.processes or max(1, snakemake.resources.gpu)
    logging.info("%d process(es)", processes)
    if processes > 1:
        launch(processes, model_config, config, snakemake.input.shards, p.run_dir, snakemake.output.model,
               threads=snakemake.threads, precision=precision, snapshot_dir=snakemake.output.snapshots)
    else:
        train(model_config, config, snakemake.input.shards, p.run_dir, snakemake.output.model, precision,
              snakemake.output.snapshots)
figures.training_curve(read_log(p.run_dir), snakemake.output.curve)
