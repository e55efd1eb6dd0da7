"""Blind denoising training: one loop, a run directory, resumable snapshots, a JSONL log.

The run directory holds `options.json` (the resolved options), `log.jsonl` (one record per log or
eval event) and `checkpoint.pt` (model, optimiser, schedule, step). A rerun with the same options
resumes from the checkpoint; with other options it starts afresh. How the run is executed (the number of
processes and loader workers, the arithmetic: `Precision`) is not part of its options, so a long run
resumes after any of them changes; `{"kind": "runtime"}` records in log.jsonl say what each start used.

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

from semcore import shards
from semcore.config import TrainConfig, UNetConfig, architecture_differences, snapshot_name
from semcore.files import atomic, save_torch
from semcore.model import UNetFlex, initial_model, receptive_fields
from semcore.progress import progress
from semcore.runtime import Precision, as_model_input, resolve_device, tune_allocator

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


class RunLog:
    """log.jsonl: appended line by line, flushed, so a killed run keeps what it logged."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        kept = []
        if resume_step is not None and path.exists():  # keep what precedes the checkpoint; evals are redone
            kept = [line for line in path.read_text().splitlines()
                    if (r := json.loads(line))["step"] < resume_step or (r["step"] == resume_step and r["kind"] == "train")]
        path.write_text("".join(line + "\n" for line in kept))
        self.file = open(path, "a")

    def write(self, **record) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_log(run_dir: str | Path) -> pd.DataFrame:
    """The run's log.jsonl as a table (precise floats: σ = 0.3 reads back as 0.3)."""
    return pd.read_json(Path(run_dir) / "log.jsonl", lines=True, precise_float=True)


def train(model_config: UNetConfig, config: TrainConfig, shard_dir: str | Path, run_dir: str | Path,
          model_path: str | Path, precision: Precision | None = None,
          snapshot_dir: str | Path | None = None) -> list[dict]:
    """Train a blind denoiser on the train shards; write the final model; return the final PSNR table.

    `precision` (default: fp32) sets the arithmetic of the forward passes; evaluation stays in fp32.
    The weights at `config.snapshot_steps()` are kept in the run directory as training passes them (a
    killed run keeps them) and, at the end, linked into `snapshot_dir` as step-NNNNNN.pt.
    Inside an initialised process group (see `main`) this is one DDP process; ranks other than 0
    write nothing and return [].
    """
    precision = precision or Precision()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    master = rank == 0
    if config.epochs is not None or config.lr_halve_every_epochs is not None:
        raise ValueError("train: the schedule must be in steps here; convert epochs with TrainConfig.in_steps")
    if config.batch_size % world:
        raise ValueError(f"train.batch_size: {config.batch_size} (the global batch) does not split evenly "
                         f"between {world} processes")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    if device.type == "cpu":
        tune_allocator()
    precision.apply(device)
    workers = loader_workers(config, device, len(shards.shard_paths(shard_dir, "train")))

    # How the run is executed is not what it computes: left out, so a run resumes with any of it changed.
    options = dict(model=asdict(model_config),
                   train={k: v for k, v in asdict(config).items()
                          if k not in ("processes", "loader_workers", "snapshot_every")},
                   data=data_fingerprint(shard_dir))
    options_hash = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()
    runtime = dict(precision.describe(device), processes=world, loader_workers=workers)
    if master:
        with atomic(run_dir / "options.json") as tmp:
            tmp.write_text(json.dumps(dict(options, hash=options_hash, runtime=runtime), indent=2))

    # The initial weights (DDP gives all ranks rank 0's anyway); channels-last: faster convs on CPU and GPU.
    model = initial_model(model_config, config.seed).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate(config, step) / config.lr)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("UNetFlex %s: %.2fM parameters, receptive fields %s, %d process(es), %s",
             model_config.channels, n_params / 1e6, receptive_fields(model_config), world, runtime)

    checkpoint_path = run_dir / "checkpoint.pt"
    start = 0
    if checkpoint_path.exists():
        snapshot = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if snapshot["options_hash"] == options_hash:
            model.load_state_dict(snapshot["model"])
            optimizer.load_state_dict(snapshot["optimizer"])
            schedule.load_state_dict(snapshot["schedule"])
            start = snapshot["step"]
            log.info("resumed from step %d (%s)", start, checkpoint_path)
        else:
            log.info("options changed since %s was written: training from scratch", checkpoint_path)
    net = DistributedDataParallel(model) if world > 1 else model  # DDP averages the gradients in backward
    run_log = RunLog(run_dir / "log.jsonl", resume_step=start if start else None) if master else None
    if master:
        if start:
            run_log.write(kind="resume", step=start)
        run_log.write(kind="runtime", step=start, **runtime)

    eval_images = as_model_input(shards.first_images(shard_dir, "test", config.eval_images), device) if master else None
    # A resumed run draws a fresh data order and fresh noise, reproducibly: both are seeded by the start
    # step, distinctly for every (start, rank); seed + start on one process.
    run_seed = (config.seed + start) * world + rank
    stream = shards.batches(shard_dir, "train", config.batch_size // world, seed=run_seed,
                            shuffle_buffer=config.shuffle_buffer, workers=workers, pin_memory=device.type == "cuda")
    noise = torch.Generator(device=device).manual_seed(run_seed)

    def evaluate(step: int) -> list[dict]:
        table = psnr_table(model, eval_images, config.eval_sigmas, config.seed)
        for row in table:
            run_log.write(kind="eval", step=step, **row)
            log.info("step %d  σ=%.2f  PSNR noisy %.2f dB → denoised %.2f dB", step, row["sigma"],
                     row["psnr_noisy"], row["psnr_denoised"])
        return table

    def save_checkpoint(step: int) -> None:
        save_torch(dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                        schedule=schedule.state_dict(), step=step, options_hash=options_hash), checkpoint_path)

    saved_step = start or None  # the step of the good checkpoint on disk

    def checked(losses: list[torch.Tensor], step: int, weights: bool) -> list[float]:
        """The losses of the steps up to `step`, read back (averaged over the processes), all finite; with
        `weights`, the weights are finite too. Else the run stops, the checkpoint on disk untouched."""
        values = torch.stack(losses)
        if world > 1:  # every process sees the same values, so all stop together
            dist.all_reduce(values)
            values /= world
        values = values.tolist()
        bad = [i for i, value in enumerate(values) if not math.isfinite(value)]
        if bad:
            stop(f"non-finite loss {values[bad[0]]} at step {step - len(values) + 1 + bad[0]} (losses are read "
                 f"back at log, eval and checkpoint steps: found at step {step})")
        if weights and not torch.stack([p.isfinite().all() for p in model.parameters()]).all():
            stop(f"non-finite weights after step {step}, with finite losses")
        return values

    def stop(problem: str) -> None:
        kept = (f"the last good checkpoint ({checkpoint_path}, step {saved_step}) is kept" if saved_step
                else "no checkpoint was written")
        raise FloatingPointError(f"{problem}; {kept}. Lower train.lr or check the data.")

    snapshot_steps = set(config.snapshot_steps())
    store = run_dir / "snapshot_store"  # not a declared output: Snakemake removes those when a job fails
    store.mkdir(exist_ok=True)

    def keep_snapshot(step: int) -> None:
        if step in snapshot_steps:
            model.save_pretrained(store / snapshot_name(step))

    if master and start == 0:
        keep_snapshot(0)
    table = evaluate(start) if master else []  # the starting point; after a resume, shows the weights were loaded
    model.train()
    tick, images_since = time.perf_counter(), 0
    pending, since_log = [], []  # losses on the device since the last check; read back since the last log
    # Its loss and img/s are the last log record's: reading the loss every step would wait for the GPU.
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
        pending.append(loss.detach())
        images_since += len(x) * world  # all processes' images
        bar.update()
        if master:
            keep_snapshot(step)

        log_due = step % config.log_every == 0 or step == config.steps
        eval_due = step % config.eval_every == 0 or step == config.steps
        checkpoint_due = step % config.checkpoint_every == 0 or step == config.steps
        if not (log_due or eval_due or checkpoint_due):
            continue
        since_log += checked(pending, step, weights=checkpoint_due)  # on every process: a collective in DDP
        pending = []
        if log_due:
            if master:  # the mean loss since the last record; img/s up to the read-back, when all work is done
                mean_loss, img_per_s = sum(since_log) / len(since_log), images_since / (time.perf_counter() - tick)
                run_log.write(kind="train", step=step, loss=mean_loss, lr=schedule.get_last_lr()[0],
                              img_per_s=img_per_s)
                bar.set_postfix_str(f"loss {mean_loss:.4g}, {img_per_s:.0f} img/s", refresh=False)
            tick, images_since, since_log = time.perf_counter(), 0, []
        if master and eval_due:
            table = evaluate(step)
        if master and checkpoint_due:
            save_checkpoint(step)
            saved_step = step
    bar.close()

    if world > 1:  # DDP keeps the replicas equal; check, once, that it did
        digests = [None] * world
        dist.all_gather_object(digests, weights_digest(model))
        if master:
            run_log.write(kind="replicas", step=config.steps, processes=world, sha256=digests)
            if len(set(digests)) > 1:
                log.warning("the %d processes ended with different weights; rank 0's are saved", world)
    if master:
        run_log.close()
        model.save_pretrained(model_path)
        if snapshot_dir is not None:
            link_snapshots(store, snapshot_dir, sorted(snapshot_steps))
    return table


def link_snapshots(store: Path, snapshot_dir: str | Path, steps: list[int]) -> None:
    """The kept weights at `steps` into snapshot_dir (hard links where the file system allows)."""
    missing = [step for step in steps if not (store / snapshot_name(step)).exists()]
    if missing:
        raise FileNotFoundError(f"train.snapshot_every: no weights kept at steps {missing} in {store} (the setting "
                                f"changed after training passed them); delete {store.parent} to train again")
    snapshot_dir = Path(snapshot_dir)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    for step in steps:
        source, target = store / snapshot_name(step), snapshot_dir / snapshot_name(step)
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)


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
    model = UNetFlex.from_authors(path) if format == "authors" else UNetFlex.from_pretrained(path)
    differences = architecture_differences(model_config, model.config)
    if differences:
        raise ValueError(f"model.pretrained.path: {path} is not the architecture the model section describes "
                         f"({'; '.join(differences)}): make the config describe it")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    model.to(device).eval()
    (run_dir / "options.json").write_text(json.dumps(dict(model=asdict(model_config), pretrained=dict(
        path=str(path), format=format, sha256=weights_digest(model))), indent=2))
    log.info("imported %s (%s format): %.2fM parameters, device %s", path, format,
             sum(p.numel() for p in model.parameters()) / 1e6, device)
    run_log = RunLog(run_dir / "log.jsonl", resume_step=None)
    run_log.write(kind="import", step=0, path=str(path), format=format)
    images = as_model_input(shards.first_images(shard_dir, "test", config.eval_images), device)
    table = psnr_table(model, images, config.eval_sigmas, config.seed)
    for row in table:
        run_log.write(kind="eval", step=0, **row)
        log.info("σ=%.2f  PSNR noisy %.2f dB → denoised %.2f dB", row["sigma"], row["psnr_noisy"], row["psnr_denoised"])
    run_log.close()
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
