"""Blind denoising training: one loop, a run directory, resumable snapshots, a JSONL log.

The run directory holds `options.json` (the resolved options), `log.jsonl` (one record per log or
eval event) and `checkpoint.pt` (model, optimiser, schedule, step). A rerun with the same options
resumes from the checkpoint; with other options it starts afresh. A non-finite loss stops the run
before the optimiser step, so the last checkpoint on disk stays good.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from semcore import shards
from semcore.model import UNetConfig, UNetFlex, receptive_fields
from semcore.runtime import as_model_input, resolve_device, tune_allocator

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    lr_halve_every: int = 1000  # steps between halvings of the learning rate
    sigma_min: float = 0.0  # noise levels, pixels in [0, 1]
    sigma_max: float = 0.5
    sigma_distribution: str = "quadratic"  # quadratic: √σ uniform (more small σ); uniform
    loss_weighting: str = "none"  # none; inv_sigma: each image's loss divided by its σ
    log_every: int = 25
    eval_every: int = 500
    eval_sigmas: list[float] = field(default_factory=lambda: [0.1, 0.3])
    eval_images: int = 256
    checkpoint_every: int = 250
    shuffle_buffer: int = 2000
    seed: int = 0
    device: str = "auto"  # auto: CUDA when available, else CPU

    def __post_init__(self):
        if self.sigma_distribution not in ("quadratic", "uniform"):
            raise ValueError(f"train.sigma_distribution: {self.sigma_distribution!r} is not quadratic or uniform")
        if self.loss_weighting not in ("none", "inv_sigma"):
            raise ValueError(f"train.loss_weighting: {self.loss_weighting!r} is not none or inv_sigma")
        if self.loss_weighting == "inv_sigma" and self.sigma_min <= 0:
            raise ValueError("train.sigma_min: must be > 0 with loss_weighting inv_sigma (1/σ weights)")
        if not 0 <= self.sigma_min <= self.sigma_max:
            raise ValueError("train.sigma_min, sigma_max: need 0 ≤ sigma_min ≤ sigma_max")


def sample_sigmas(n: int, config: TrainConfig, generator=None, device="cpu") -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=device)
    if config.sigma_distribution == "quadratic":
        lo, hi = math.sqrt(config.sigma_min), math.sqrt(config.sigma_max)
        return (lo + (hi - lo) * u) ** 2
    return config.sigma_min + (config.sigma_max - config.sigma_min) * u


def denoising_loss(model: UNetFlex, x: torch.Tensor, sigmas: torch.Tensor, weighting: str) -> torch.Tensor:
    """Σ_pixels (x̂(x + σz) − x)² per image, averaged over the batch (optionally weighted by 1/σ)."""
    noisy = x + sigmas.view(-1, 1, 1, 1) * torch.randn_like(x)
    per_image = (model(noisy) - x).pow(2).sum(dim=(1, 2, 3))
    if weighting == "inv_sigma":
        per_image = per_image / sigmas
    return per_image.mean()


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


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
          model_path: str | Path) -> list[dict]:
    """Train a blind denoiser on the train shards; write the final model; return the final PSNR table."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    if device.type == "cpu":
        tune_allocator()
    torch.manual_seed(config.seed)

    options = dict(model=asdict(model_config), train=asdict(config), data=data_fingerprint(shard_dir))
    options_hash = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()
    (run_dir / "options.json").write_text(json.dumps(dict(options, hash=options_hash), indent=2))

    model = UNetFlex(model_config).to(device, memory_format=torch.channels_last)  # faster convs on CPU and GPU
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_halve_every, gamma=0.5)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("UNetFlex %s: %.2fM parameters, receptive fields %s, device %s",
             model_config.channels, n_params / 1e6, receptive_fields(model_config), device)

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
    run_log = RunLog(run_dir / "log.jsonl", resume_step=start if start else None)
    if start:
        run_log.write(kind="resume", step=start)

    eval_images = as_model_input(shards.first_images(shard_dir, "test", config.eval_images), device)
    # A resumed run draws a fresh data order: seeding by the start step keeps it reproducible.
    stream = shards.batches(shard_dir, "train", config.batch_size, seed=config.seed + start,
                            shuffle_buffer=config.shuffle_buffer)

    def evaluate(step: int) -> list[dict]:
        table = psnr_table(model, eval_images, config.eval_sigmas, config.seed)
        for row in table:
            run_log.write(kind="eval", step=step, **row)
            log.info("step %d  σ=%.2f  PSNR noisy %.2f dB → denoised %.2f dB", step, row["sigma"],
                     row["psnr_noisy"], row["psnr_denoised"])
        return table

    def save_checkpoint(step: int) -> None:
        _save_atomic(dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                          schedule=schedule.state_dict(), step=step, options_hash=options_hash), checkpoint_path)

    table = evaluate(start)  # the starting point; after a resume, shows the saved weights were loaded
    model.train()
    tick, images_since = time.perf_counter(), 0
    for step in range(start + 1, config.steps + 1):
        x = as_model_input(next(stream), device)
        sigmas = sample_sigmas(len(x), config, device=device)
        loss = denoising_loss(model, x, sigmas, config.loss_weighting)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at step {step}; the last good checkpoint "
                f"({checkpoint_path}) is kept. Lower train.lr or check the data.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        images_since += len(x)

        if step % config.log_every == 0 or step == config.steps:
            elapsed = time.perf_counter() - tick
            run_log.write(kind="train", step=step, loss=loss.item(), lr=schedule.get_last_lr()[0],
                          img_per_s=images_since / elapsed)
            tick, images_since = time.perf_counter(), 0
        if step % config.eval_every == 0 or step == config.steps:
            table = evaluate(step)
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(step)

    run_log.close()
    model.save_pretrained(model_path)
    return table
