"""Which demo denoiser generates scenes within the demo's budget? Trains variants of the demo config on its
shards (model size, σ range, batch, steps), then draws unconditional samples with the coarse-to-fine
ascent from the flat mean-colour start, with the variant's sampler settings and a sweep of the authors'
fixed h and growing h at several β (SAMPLERS); prints training time, test PSNR and each sampler's steps,
and writes a grid per variant (a row per sampler: look at them) to --out.

Usage: python benchmarks/bench_demo_denoiser.py --shards results/demo/shards --out /tmp/demo-variants \
           [--variant name key=value …]
       (keys: channels=16,32,64 steps= batch_size= lr= lr_halve_every= sigma_max= sigma_0= sigma_final= h0= beta=
        h_schedule=true|false)
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch
from PIL import Image

from semcore import figures, sample, shards, tables
from semcore.model import UNetFlex
from semcore.plan.settings import TrainConfig, UNetConfig
from semcore.train import psnr_table, train

BASE = dict(channels=[16, 32, 64, 128], steps=1200, batch_size=32, lr=2e-3, lr_halve_every=400, sigma_max=0.5,
            sigma_0=1.0, sigma_final=0.03, h0=0.1, beta=0.1, h_schedule=True, )


# Unconditional ascents drawn from every trained variant, one grid row each (after the variant's own):
# (h0, β, growing h). Fixed h0 = 0.01 is the authors' default; growing h is their option.
SAMPLERS = [(h0, beta, schedule) for beta in (0.1, 0.5, 1.0) for h0, schedule in ((0.01, False), (0.05, False), (0.1, True))]


def images_side(rows: list[list]) -> int:
    return rows[0][0].shape[0]


def parse_variant(items: list[str]) -> dict:
    variant = dict(BASE)
    for item in items:
        key, value = item.split("=", 1)
        variant[key] = [int(v) for v in value.split(",")] if key == "channels" else json.loads(value)
    return variant


def run(name: str, v: dict, shard_dir: str, out: Path) -> dict:
    model_config = UNetConfig(channels=v["channels"])
    config = TrainConfig(steps=v["steps"], batch_size=v["batch_size"], lr=v["lr"], lr_halve_every=v["lr_halve_every"],
                         sigma_max=v["sigma_max"], eval_every=v["steps"], checkpoint_every=v["steps"], device="cpu")
    run_dir = out / name
    started = time.perf_counter()
    train(model_config, config, shard_dir, run_dir, run_dir / "model.pt")
    train_s = time.perf_counter() - started
    model = UNetFlex.from_pretrained(run_dir / "model.pt").eval()
    test = shards.first_images(shard_dir, "test", 256).float() / 255
    psnr = {row["sigma"]: row["psnr_denoised"] for row in psnr_table(model, test, [0.1, 0.3, 0.6], 0)}
    start = sample.start_image(shards.shard_paths(shard_dir, "train"), "mean_colour")
    rows, steps = [], {}
    started = time.perf_counter()
    for h0, beta, schedule in [(v["h0"], v["beta"], v["h_schedule"]), *SAMPLERS]:  # the variant's, then the sweep
        drawn = sample.ascent(model, torch.arange(8), start, sigma_0=v["sigma_0"], sigma_final=v["sigma_final"],
                              h0=h0, beta=beta, h_schedule=schedule, max_steps=3000,
                              generator=torch.Generator().manual_seed(0))
        steps[f"h0={h0} β={beta}{' growing' if schedule else ''}"] = int(drawn.steps.max())
        rows.append(list(tables.as_uint8(drawn.images)))
    sample_s = time.perf_counter() - started
    Image.fromarray(figures.grid(rows, scale=max(1, 96 // images_side(rows)))).save(out / f"{name}.png")
    return dict(variant=name, params=sum(p.numel() for p in model.parameters()), train_s=round(train_s),
                **{f"psnr@{s}": round(p, 2) for s, p in psnr.items()}, sampler_steps=steps,
                sample_s=round(sample_s, 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar="NAME KEY=VALUE")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    for name, *items in args.variant:
        result = run(name, parse_variant(items), args.shards, args.out)
        print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
