"""Blind denoising training: one loop, a run directory, resumable snapshots, a JSONL log.

The run directory (`RunDirectory`) holds `options.json` (the resolved options), `log.jsonl` (one record per
log or eval event), `checkpoint.pt` (model, optimiser, schedule, step) and `snapshot_store/` (the weights kept
at the snapshot steps). A rerun with the same options resumes from the checkpoint; with other options it
starts afresh. How the run is executed (the number of processes and loader workers, the arithmetic:
`Precision`) is not part of its options, so a long run resumes after any of them changes;
`{"kind": "runtime"}` records in log.jsonl say what each start used.

The losses stay on the device between log, eval and checkpoint steps (reading one back every step would
make the CPU wait for the GPU each step). There they are checked: a non-finite one stops the run, naming its
step. A checkpoint is written only once every loss before it and its weights are found finite, so the one on
disk is always good. The data order and the noise are seeded by (seed, start step, rank): a resumed run
draws new ones, not those its start drew.

Several processes on one node (`launch`: torchrun, torch DDP; NCCL on CUDA, gloo on CPU) each train a
replica on their own stream of batches and average gradients. `batch_size` is the global batch, split
evenly between the processes, so a config means the same optimisation on any number of them; the
process count is not part of the run's options, so a run resumes on any number. Rank 0 alone writes
the run directory and the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from semcore import authors, shards
from semcore.files import atomic
from semcore.model import UNetFlex, initial_model, receptive_fields
from semcore.plan.names import snapshot_name
from semcore.plan.settings import TrainConfig, UNetConfig, architecture_differences
from semcore.progress import progress
from semcore.runtime import Precision, as_model_input, resolve_device, save_torch, tune_allocator

log = logging.getLogger(__name__)


def sample_sigmas(n: int, config: TrainConfig, generator=None, device="cpu") -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=device)
    if config.sigma_distribution == "quadratic":
        lo, hi = math.sqrt(config.sigma_min), math.sqrt(config.sigma_max)
        return (lo + (hi - lo) * u) ** 2
    return config.sigma_min + (config.sigma_max - config.sigma_min) * u


def denoising_loss(model: nn.Module, x: torch.Tensor, sigmas: torch.Tensor, weighting: str,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Σ_pixels (x̂(x + σz) − x)² per image, averaged over the batch; with weighting inv_sigma_squared,
    Σ_pixels ((x̂ − x)/σ)², the authors' weighted loss (a 1/σ² weight per image). z is drawn from
    `generator` (default: torch's global one). Under autocast x̂ may be bfloat16: the loss is in fp32."""
    noise = torch.empty_like(x).normal_(generator=generator)
    noisy = x + sigmas.view(-1, 1, 1, 1) * noise
    per_image = (model(noisy).float() - x).pow(2).sum(dim=(1, 2, 3))
    if weighting == "inv_sigma_squared":
        per_image = per_image / sigmas.square()
    return per_image.mean()


def learning_rate(config: TrainConfig, step: int) -> float:
    """The lr of optimiser step `step` (0-based): halved every lr_halve_every steps, as the authors halve it
    at the start of every lr_freq-th epoch."""
    return config.lr * 0.5 ** (step // config.lr_halve_every)


@torch.no_grad()
def psnr_table(model: UNetFlex, images: torch.Tensor, sigmas: list[float], seed: int) -> list[dict]:
    """PSNR (dB, peak 1) of noisy inputs and of their denoised outputs, fixed noise per σ."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for sigma in sigmas:
        noise = torch.randn(images.shape, generator=generator).to(images.device)
        noisy = images + sigma * noise
        rows.append(dict(sigma=sigma, psnr_noisy=_psnr(noisy, images), psnr_denoised=_psnr(model(noisy), images)))
    model.train(was_training)
    return rows


def _psnr(estimate: torch.Tensor, target: torch.Tensor) -> float:
    mse = (estimate - target).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return float((-10 * torch.log10(mse)).mean())


def data_fingerprint(shard_dir: str | Path) -> list:
    """Names, sizes and mtimes of the shards: new shards must not resume an old run."""
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(shard_dir).glob("*.tar"))]


def weights_digest(model: nn.Module) -> str:
    """sha256 of the parameters and buffers, whatever their memory layout or device."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class RunDirectory:
    """A run's directory: `options.json`, `log.jsonl`, `checkpoint.pt` and the weights kept at the snapshot
    steps (`snapshot_store/`), and the step of the last good checkpoint on disk.

    A checkpoint resumes the run when it was written with the same options (their hash); else the run starts
    afresh. Opened with `writer=False` (DDP ranks other than 0) it reads the checkpoint and writes nothing.
    """

    def __init__(self, path: str | Path, options: dict, writer: bool = True):
        self.path, self.options, self.writer = Path(path), options, writer
        self.path.mkdir(parents=True, exist_ok=True)
        self.hash = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()
        self.checkpoint = self.path / "checkpoint.pt"
        self.store = self.path / "snapshot_store"  # not a declared output: Snakemake removes those when a job fails
        self.saved_step: int | None = None  # the step of the good checkpoint on disk
        self.log_file = None

    def resume(self, model: nn.Module, optimizer, schedule, device: torch.device) -> int:
        """Load the checkpoint into `model`, `optimizer` and `schedule` if it has these options: its step; else 0."""
        if not self.checkpoint.exists():
            return 0
        saved = torch.load(self.checkpoint, map_location=device, weights_only=True)
        if saved["options_hash"] != self.hash:
            log.info("options changed since %s was written: training from scratch", self.checkpoint)
            return 0
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        self.saved_step = saved["step"]
        log.info("resumed from step %d (%s)", self.saved_step, self.checkpoint)
        return self.saved_step

    def open(self, start: int, **extra) -> None:
        """Write options.json (the options and `extra`) and start log.jsonl: after a resume at `start`, it
        keeps the records before the checkpoint (its evals are redone) and says so; else it starts empty."""
        if not self.writer:
            return
        with atomic(self.path / "options.json") as tmp:
            tmp.write_text(json.dumps(dict(self.options, **extra), indent=2))
        path, kept = self.path / "log.jsonl", []
        if start and path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if (r := json.loads(line))["step"] < start or (r["step"] == start and r["kind"] == "train")]
        path.write_text("".join(line + "\n" for line in kept))
        self.log_file = open(path, "a")
        if start:
            self.write(kind="resume", step=start)

    def write(self, **record) -> None:
        """One record in log.jsonl, flushed: a killed run keeps what it logged."""
        if self.writer:
            self.log_file.write(json.dumps(record) + "\n")
            self.log_file.flush()

    def save_checkpoint(self, model: nn.Module, optimizer, schedule, step: int) -> None:
        """The model, optimiser and schedule after `step`, written atomically: call it once they are checked."""
        if self.writer:
            save_torch(dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                            schedule=schedule.state_dict(), step=step, options_hash=self.hash), self.checkpoint)
        self.saved_step = step

    def kept(self) -> str:
        """What a stopped run leaves on disk."""
        return (f"the last good checkpoint ({self.checkpoint}, step {self.saved_step}) is kept" if self.saved_step
                else "no checkpoint was written")

    def keep_snapshot(self, model: UNetFlex, step: int) -> None:
        if self.writer:
            self.store.mkdir(exist_ok=True)
            model.save_pretrained(self.store / snapshot_name(step))

    def link_snapshots(self, snapshot_dir: str | Path, steps: list[int]) -> None:
        """The kept weights at `steps` into snapshot_dir (hard links where the file system allows)."""
        missing = [step for step in steps if not (self.store / snapshot_name(step)).exists()]
        if missing:
            raise FileNotFoundError(f"train.snapshot_every: no weights kept at steps {missing} in {self.store} (the "
                                    f"setting changed after training passed them); delete {self.path} to train again")
        snapshot_dir = Path(snapshot_dir)
        snapshot_dir.mkdir(parents=True, exist_ok=True)
        for step in steps:
            source, target = self.store / snapshot_name(step), snapshot_dir / snapshot_name(step)
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)

    def close(self) -> None:
        if self.log_file is not None:
            self.log_file.close()


def read_log(run_dir: str | Path) -> pd.DataFrame:
    """The run's log.jsonl as a table (precise floats: σ = 0.3 reads back as 0.3)."""
    return pd.read_json(Path(run_dir) / "log.jsonl", lines=True, precise_float=True)


class Losses:
    """The training losses: those since the last read-back stay on the device (reading one every step would
    make the CPU wait for the GPU); those read back since the last log record make its mean. With the images
    since that record (all processes'), for img/s."""

    def __init__(self, world: int):
        self.world, self.pending, self.since_record = world, [], []
        self.tick, self.images = time.perf_counter(), 0

    def add(self, loss: torch.Tensor, images: int) -> None:
        self.pending.append(loss.detach())
        self.images += images * self.world

    def read_back(self, step: int, model: nn.Module, weights: bool, run: RunDirectory) -> None:
        """The losses of the steps up to `step`, read back (averaged over the processes), all finite; with
        `weights`, the weights are finite too. Else the run stops, the checkpoint on disk untouched. In DDP a
        collective: every process calls it."""
        values = torch.stack(self.pending)
        self.pending = []
        if self.world > 1:  # every process sees the same values, so all stop together
            dist.all_reduce(values)
            values /= self.world
        values = values.tolist()
        bad = [i for i, value in enumerate(values) if not math.isfinite(value)]
        if bad:
            problem = (f"non-finite loss {values[bad[0]]} at step {step - len(values) + 1 + bad[0]} (losses are "
                       f"read back at log, eval and checkpoint steps: found at step {step})")
        elif weights and not torch.stack([p.isfinite().all() for p in model.parameters()]).all():
            problem = f"non-finite weights after step {step}, with finite losses"
        else:
            self.since_record += values
            return
        raise FloatingPointError(f"{problem}; {run.kept()}. Lower train.lr or check the data.")

    def since_last_record(self) -> tuple[float, float]:
        """The mean loss and img/s since the last call (or the start), up to the last read-back, when all work
        was done; counting starts afresh."""
        mean_loss = sum(self.since_record) / len(self.since_record)
        img_per_s = self.images / (time.perf_counter() - self.tick)
        self.tick, self.images, self.since_record = time.perf_counter(), 0, []
        return mean_loss, img_per_s


def run_options(model_config: UNetConfig, config: TrainConfig, shard_dir: str | Path) -> dict:
    """What the run computes, which a checkpoint must share to resume it. How it is executed (processes, loader
    workers, precision) is left out, so a run resumes with any of it changed; snapshot_every too."""
    return dict(model=asdict(model_config),
                train={k: v for k, v in asdict(config).items()
                       if k not in ("processes", "loader_workers", "snapshot_every")},
                data=data_fingerprint(shard_dir))


def evaluate(model: UNetFlex, images: torch.Tensor, config: TrainConfig, step: int, run: RunDirectory) -> list[dict]:
    """The PSNR table at `step`, logged as eval records (a trained network's, and an imported one's at step 0)."""
    table = psnr_table(model, images, config.eval_sigmas, config.seed)
    for row in table:
        run.write(kind="eval", step=step, **row)
        log.info("step %d  σ=%.2f  PSNR noisy %.2f dB → denoised %.2f dB", step, row["sigma"],
                 row["psnr_noisy"], row["psnr_denoised"])
    return table


def train(model_config: UNetConfig, config: TrainConfig, shard_dir: str | Path, run_dir: str | Path,
          model_path: str | Path, precision: Precision | None = None,
          snapshot_dir: str | Path | None = None) -> list[dict]:
    """Train a blind denoiser on the train shards; write the final model; return the final PSNR table.

    `precision` (default: fp32) sets the arithmetic of the forward passes; evaluation stays in fp32. The
    weights at `config.snapshot_steps()` are kept in the run directory as training passes them (a killed run
    keeps them) and, at the end, linked into `snapshot_dir` as step-NNNNNN.pt. Inside an initialised process
    group (see `main`) this is one DDP process; ranks other than 0 write nothing and return [].
    """
    # Set up: the processes, the device, the run directory.
    precision = precision or Precision()
    rank, world = processes(config)
    master = rank == 0
    device = prepare_device(config, precision)
    workers = loader_workers(config, device, len(shards.shard_paths(shard_dir, "train")))
    runtime = dict(precision.describe(device), processes=world, loader_workers=workers)
    run = RunDirectory(run_dir, run_options(model_config, config, shard_dir), writer=master)

    # The model (DDP gives all ranks rank 0's initial weights anyway), resumed where a checkpoint has its options.
    model, optimizer, schedule = initial_state(model_config, config, device)
    log.info("UNetFlex %s: %.2fM parameters, receptive fields %s, %d process(es), %s", model_config.channels,
             sum(p.numel() for p in model.parameters()) / 1e6, receptive_fields(model_config), world, runtime)
    start = run.resume(model, optimizer, schedule, device)
    run.open(start, hash=run.hash, runtime=runtime)
    run.write(kind="runtime", step=start, **runtime)
    net = DistributedDataParallel(model) if world > 1 else model  # DDP averages the gradients in backward

    # Data: a resumed run draws a fresh data order and fresh noise, reproducibly: both are seeded by the start
    # step, distinctly for every (start, rank); seed + start on one process.
    eval_images = as_model_input(shards.first_images(shard_dir, "test", config.eval_images), device) if master else None
    run_seed = (config.seed + start) * world + rank
    stream = shards.batches(shard_dir, "train", config.batch_size // world, seed=run_seed,
                            shuffle_buffer=config.shuffle_buffer, workers=workers, pin_memory=device.type == "cuda")
    noise = torch.Generator(device=device).manual_seed(run_seed)

    # The starting point: the untrained weights kept, an eval (after a resume: shows the weights were loaded).
    snapshot_steps = set(config.snapshot_steps())
    if start == 0:
        run.keep_snapshot(model, 0)
    table = evaluate(model, eval_images, config, start, run) if master else []

    # Train.
    model.train()
    losses = Losses(world)
    bar = progress(total=config.steps, initial=start, desc="train", unit="steps", disable=not master)
    for step in range(start + 1, config.steps + 1):
        x = as_model_input(next(stream), device)
        sigmas = sample_sigmas(len(x), config, generator=noise, device=device)
        with precision.autocast_context(device):
            loss = denoising_loss(net, x, sigmas, config.loss_weighting, generator=noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.add(loss, len(x))
        bar.update()
        # Every so many steps: a snapshot; the losses read back and checked; a log record, an eval, a checkpoint.
        if step in snapshot_steps:
            run.keep_snapshot(model, step)
        log_due, eval_due, checkpoint_due = due(config, step)
        if log_due or eval_due or checkpoint_due:
            losses.read_back(step, model, weights=checkpoint_due, run=run)
        if log_due:
            log_training(run, losses, step, schedule.get_last_lr()[0], bar)
        if eval_due and master:
            table = evaluate(model, eval_images, config, step, run)
        if checkpoint_due:  # after the read-back: every loss before it and its weights are finite
            run.save_checkpoint(model, optimizer, schedule, step)
    bar.close()

    # The end: the replicas compared, the model saved, the snapshots linked.
    check_replicas(model, run, world, config.steps)
    run.close()
    if master:
        model.save_pretrained(model_path)
        if snapshot_dir is not None:
            run.link_snapshots(snapshot_dir, sorted(snapshot_steps))
    return table


def processes(config: TrainConfig) -> tuple[int, int]:
    """This process's rank and the number of processes (1 outside a process group), the global batch split
    evenly between them; the schedule must be in steps."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if config.epochs is not None or config.lr_halve_every_epochs is not None:
        raise ValueError("train: the schedule must be in steps here; convert epochs with TrainConfig.in_steps")
    if config.batch_size % world:
        raise ValueError(f"train.batch_size: {config.batch_size} (the global batch) does not split evenly "
                         f"between {world} processes")
    return rank, world


def prepare_device(config: TrainConfig, precision: Precision) -> torch.device:
    """The configured device, with the precision's backend switches set (and on a CPU, the allocator tuned)."""
    device = resolve_device(config.device)
    if device.type == "cpu":
        tune_allocator()
    precision.apply(device)
    return device


def initial_state(model_config: UNetConfig, config: TrainConfig, device: torch.device):
    """The initial model (channels-last: faster convs on CPU and GPU), its Adam optimiser and lr schedule."""
    model = initial_model(model_config, config.seed).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate(config, step) / config.lr)
    return model, optimizer, schedule


def due(config: TrainConfig, step: int) -> tuple[bool, bool, bool]:
    """Whether `step` is a log, an eval, a checkpoint step (the last step is all three)."""
    return tuple(step % every == 0 or step == config.steps
                 for every in (config.log_every, config.eval_every, config.checkpoint_every))


def log_training(run: RunDirectory, losses: Losses, step: int, lr: float, bar) -> None:
    """The train record: the mean loss since the last one, the lr, img/s. The progress bar shows the last
    record's loss and img/s: reading the loss every step would wait for the GPU."""
    mean_loss, img_per_s = losses.since_last_record()
    run.write(kind="train", step=step, loss=mean_loss, lr=lr, img_per_s=img_per_s)
    bar.set_postfix_str(f"loss {mean_loss:.4g}, {img_per_s:.0f} img/s", refresh=False)


def check_replicas(model: nn.Module, run: RunDirectory, world: int, step: int) -> None:
    """DDP keeps the replicas equal: check, once, at the end, that it did (a collective)."""
    if world == 1:
        return
    digests = [None] * world
    dist.all_gather_object(digests, weights_digest(model))
    run.write(kind="replicas", step=step, processes=world, sha256=digests)
    if run.writer and len(set(digests)) > 1:
        log.warning("the %d processes ended with different weights; rank 0's are saved", world)


def loader_workers(config: TrainConfig, device: torch.device, n_shards: int) -> int:
    """train.loader_workers, or where unset: on CUDA one per thread of this process less one (it only feeds
    the GPU), on a CPU none (workers would take cores from the training threads). At most one per shard."""
    wanted = config.loader_workers
    if wanted is None:
        wanted = max(1, torch.get_num_threads() - 1) if device.type == "cuda" else 0
    return min(wanted, n_shards)


def import_pretrained(model_config: UNetConfig, config: TrainConfig, path: str | Path, format: str,
                      shard_dir: str | Path, run_dir: str | Path, model_path: str | Path,
                      snapshot_dir: str | Path | None = None) -> list[dict]:
    """A trained network in place of training: read in this package's format or the authors', checked
    against the configured architecture, evaluated on the test split as a trained one is, saved as the
    model. Its only snapshot is step 0, the untrained network at train.seed (the baseline). Returns its
    PSNR table."""
    model = authors.load(path) if format == "authors" else UNetFlex.from_pretrained(path)
    differences = architecture_differences(model_config, model.config)
    if differences:
        raise ValueError(f"model.pretrained.path: {path} is not the architecture the model section describes "
                         f"({'; '.join(differences)}): make the config describe it")
    device = resolve_device(config.device)
    model.to(device).eval()
    run = RunDirectory(run_dir, dict(model=asdict(model_config), pretrained=dict(
        path=str(path), format=format, sha256=weights_digest(model))))
    run.open(start=0)
    log.info("imported %s (%s format): %.2fM parameters, device %s", path, format,
             sum(p.numel() for p in model.parameters()) / 1e6, device)
    run.write(kind="import", step=0, path=str(path), format=format)
    images = as_model_input(shards.first_images(shard_dir, "test", config.eval_images), device)
    table = evaluate(model, images, config, 0, run)
    run.close()
    model.cpu().save_pretrained(model_path)
    if snapshot_dir is not None:
        Path(snapshot_dir).mkdir(parents=True, exist_ok=True)
        initial_model(model_config, config.seed).save_pretrained(Path(snapshot_dir) / snapshot_name(0))
    return table


def launch(processes: int, model_config: UNetConfig, config: TrainConfig, shard_dir: str | Path,
           run_dir: str | Path, model_path: str | Path, threads: int | None = None,
           precision: Precision | None = None, snapshot_dir: str | Path | None = None) -> None:
    """`train` in `processes` DDP processes on this node (torchrun), waiting for them all.

    Their log lines go to this process's stderr; `threads` (default: all cores) are shared between them.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "semcore.train", str(shard_dir), str(run_dir), str(model_path),
               "--model", json.dumps(asdict(model_config)), "--train", json.dumps(asdict(config)),
               "--precision", json.dumps(asdict(precision or Precision()))]
    command += ["--snapshots", str(snapshot_dir)] if snapshot_dir is not None else []
    threads_each = max(1, (threads or os.cpu_count()) // processes)
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads_each)),
                   stdout=sys.stderr, stderr=sys.stderr)


def main() -> None:
    """One DDP process, as torchrun starts it (see `launch`)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("shard_dir")
    parser.add_argument("run_dir")
    parser.add_argument("model_path")
    parser.add_argument("--model", required=True, help="UNetConfig as JSON")
    parser.add_argument("--train", required=True, help="TrainConfig as JSON")
    parser.add_argument("--precision", default="{}", help="runtime.Precision as JSON")
    parser.add_argument("--snapshots", help="the folder the kept weights are linked into at the end")
    args = parser.parse_args()
    config = TrainConfig(**json.loads(args.train))
    rank = int(os.environ["RANK"])
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s rank {rank} %(levelname)s %(message)s")
    # The norms' [1, C, 1, 1] scales are channels-last like the convs; DDP notes their gradients' strides
    # differ, which for size-1 dimensions changes nothing.
    warnings.filterwarnings("ignore", "Grad strides do not match bucket view strides")
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # "cuda" below means this process's GPU
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        train(UNetConfig(**json.loads(args.model)), config, args.shard_dir, args.run_dir, args.model_path,
              Precision(**json.loads(args.precision)), args.snapshots)
        dist.barrier()  # no process leaves (and tears down its connections) while rank 0 still writes
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
