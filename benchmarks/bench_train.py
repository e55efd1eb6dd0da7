"""Training throughput of the default model on this machine, against the machine's own limits.

Prints: training img/s (the real training loop on synthetic shards) in fp32 and under bf16 autocast,
the model's FLOPs per training image (forward + backward, counted by torch's FlopCounterMode), the
achieved FLOP/s as a fraction of a large fp32 matmul's FLOP/s measured in the same run, and the training
loader's img/s with 0, 1, 2 and 4 worker processes, on the config's images and on 64×64 photo patches
(natural images, as ImageNet 64×64), per worker and against training img/s.
Usage: python benchmarks/bench_train.py [--config config.yaml] [--steps 80]
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import psutil
import torch
import yaml
from snakemake.utils import validate
from torch.utils.flop_counter import FlopCounterMode

from semcore import shards
from semcore.model import UNetFlex
from semcore.plan.schema import SCHEMA
from semcore.plan.settings import model_config, train_config
from semcore.runtime import Precision, as_model_input
from semcore.sources import patches, synthetic
from semcore.train import train

REPO = Path(__file__).resolve().parents[1]


def matmul_flops(n: int = 2048, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * n**3 / (time.perf_counter() - start)


def train_flops_per_image(model: UNetFlex, channels: int, size: int) -> float:
    x = torch.rand(1, channels, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops()


WORKERS = (0, 1, 2, 4)


def loader_images_per_s(shard_dir: Path, batch_size: int, workers: int, batches: int = 300) -> tuple[float, float]:
    """Batches as training takes them (uint8 → float input), after every worker has delivered a few: img/s,
    and images per CPU-second of the decoding processes (the workers, or this one with none), which other
    load on the machine does not change."""
    stream = shards.batches(shard_dir, "train", batch_size, seed=0, workers=workers)
    for _ in range(2 * workers + 1):
        next(stream)
    decoders = psutil.Process().children() if workers else [psutil.Process()]  # psutil: a snakemake dependency
    cpu_seconds = lambda: sum(sum(p.cpu_times()[:2]) for p in decoders)  # user + system
    start, cpu_start = time.perf_counter(), cpu_seconds()
    for _ in range(batches):
        as_model_input(next(stream), torch.device("cpu"))
    images = batches * batch_size
    return images / (time.perf_counter() - start), images / (cpu_seconds() - cpu_start)


def training_images_per_s(model_cfg, train_cfg, shard_dir: Path, run_dir: Path, precision: Precision) -> float:
    train(model_cfg, train_cfg, shard_dir, run_dir, run_dir / "model.pt", precision)
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    rates = [r["img_per_s"] for r in log if r["kind"] == "train"][1:]  # the first interval warms up
    return sum(rates) / len(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=REPO / "config.yaml")
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()

    config = yaml.safe_load(Path(args.config).read_text())
    validate(config, SCHEMA)  # fills the defaults
    model_cfg, train_cfg = model_config(config), train_config(config)
    size, channels = config["data"]["size"], config["data"]["channels"]
    train_cfg.steps, train_cfg.log_every, train_cfg.eval_every = args.steps, 10, 10**9
    train_cfg.checkpoint_every = 10**9

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # ≥ 4 train shards each, so that 4 workers have one of their own.
        shards.write_shards(synthetic(3000, 0, size), tmp / "shards", source="synthetic", size=size,
                            channels=channels, min_size=size, test_fraction=0.1, seed=0, samples_per_shard=250)
        shards.write_shards(patches(200, 64, 256, None, 0), tmp / "photos", source="patches", size=64, channels=3,
                            min_size=64, test_fraction=0.1, seed=0, samples_per_shard=250)
        rates = {precision: training_images_per_s(model_cfg, train_cfg, tmp / "shards", tmp / f"run-{precision}",
                                                  Precision(autocast=precision)) for precision in ("none", "bf16")}
        train_rate = rates["none"]
        loaders = {(name, workers): loader_images_per_s(tmp / name, train_cfg.batch_size, workers)
                   for name in ("shards", "photos") for workers in WORKERS}

    flops = train_flops_per_image(UNetFlex(model_cfg), channels, size)
    peak = matmul_flops()
    achieved = train_rate * flops
    n_params = sum(p.numel() for p in UNetFlex(model_cfg).parameters())
    print(f"model                 UNetFlex {model_cfg.channels}, {n_params / 1e6:.2f}M parameters, "
          f"{size}x{size}x{channels}, batch {train_cfg.batch_size}, {torch.get_num_threads()} threads")
    print(f"training, fp32        {train_rate:9.1f} img/s")
    print(f"training, bf16        {rates['bf16']:9.1f} img/s = {rates['bf16'] / train_rate:.2f}x fp32 (CPU autocast)")
    print(f"FLOPs per image       {flops / 1e9:9.3f} GFLOP (forward + backward)")
    print(f"achieved              {achieved / 1e9:9.1f} GFLOP/s")
    print(f"fp32 matmul 2048^2    {peak / 1e9:9.1f} GFLOP/s")
    print(f"fraction of matmul    {achieved / peak:9.2f}   (goal >= 0.6)")
    cores = os.cpu_count()
    for name, title in (("shards", f"{size}x{size} {config['data']['source']}"), ("photos", "64x64 photo patches")):
        print(f"loader, {title}, batch {train_cfg.batch_size}, {cores} cores: img/s, per worker; "
              "img per CPU-second of decoding")
        for workers in WORKERS:
            rate, per_cpu_second = loaders[(name, workers)]
            print(f"  {workers} workers      {rate:9.1f}   {rate / max(workers, 1):9.1f}   {per_cpu_second:9.1f}")
    print(f"loader, 0 workers     {loaders[('shards', 0)][0] / train_rate:9.1f}x training fp32 (goal >= 10x)")

if __name__ == "__main__":
    main()
