"""Training throughput of the default model on this machine, against the machine's own limits.

Prints: training img/s (the real training loop on synthetic shards), the model's FLOPs per training
image (forward + backward, counted by torch's FlopCounterMode), the achieved FLOP/s as a fraction of
a large fp32 matmul's FLOP/s measured in the same run, and the WebDataset loader's img/s against
training img/s.   Usage: python benchmarks/bench_train.py [--config config.yaml] [--steps 80]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml
from snakemake.utils import validate
from torch.utils.flop_counter import FlopCounterMode

from semcore import shards
from semcore.config import model_config, train_config
from semcore.model import UNetFlex
from semcore.sources import synthetic
from semcore.runtime import as_model_input
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


def loader_images_per_s(shard_dir: Path, batch_size: int, batches: int = 200) -> float:
    stream = shards.batches(shard_dir, "train", batch_size, seed=0)
    next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        as_model_input(next(stream), torch.device("cpu"))
    return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=REPO / "config.yaml")
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()

    config = yaml.safe_load(Path(args.config).read_text())
    validate(config, REPO / "schemas" / "config.schema.yaml")  # fills the defaults
    model_cfg, train_cfg = model_config(config), train_config(config)
    size, channels = config["data"]["size"], config["data"]["channels"]
    train_cfg.steps, train_cfg.log_every, train_cfg.eval_every = args.steps, 10, 10**9
    train_cfg.checkpoint_every = 10**9

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shards.write_shards(synthetic(3000, 0, size), tmp / "shards", source="synthetic", size=size,
                            channels=channels, min_size=size, test_fraction=0.1, seed=0, samples_per_shard=1000)
        train(model_cfg, train_cfg, tmp / "shards", tmp / "run", tmp / "model.pt")
        log = [json.loads(line) for line in (tmp / "run" / "log.jsonl").read_text().splitlines()]
        rates = [r["img_per_s"] for r in log if r["kind"] == "train"][1:]  # the first interval warms up
        train_rate = sum(rates) / len(rates)
        loader_rate = loader_images_per_s(tmp / "shards", train_cfg.batch_size)

    flops = train_flops_per_image(UNetFlex(model_cfg), channels, size)
    peak = matmul_flops()
    achieved = train_rate * flops
    n_params = sum(p.numel() for p in UNetFlex(model_cfg).parameters())
    print(f"model                 UNetFlex {model_cfg.channels}, {n_params / 1e6:.2f}M parameters, "
          f"{size}x{size}x{channels}, batch {train_cfg.batch_size}, {torch.get_num_threads()} threads")
    print(f"training              {train_rate:9.1f} img/s")
    print(f"FLOPs per image       {flops / 1e9:9.3f} GFLOP (forward + backward)")
    print(f"achieved              {achieved / 1e9:9.1f} GFLOP/s")
    print(f"fp32 matmul 2048^2    {peak / 1e9:9.1f} GFLOP/s")
    print(f"fraction of matmul    {achieved / peak:9.2f}   (goal >= 0.6)")
    print(f"WebDataset loader     {loader_rate:9.1f} img/s = {loader_rate / train_rate:.1f}x training (goal >= 10x)")


if __name__ == "__main__":
    main()
