"""The paper's workload on one GPU, in a few minutes: is the cluster run worth starting as configured?

Trains the paper's UNet_flex (13.7M parameters, 64×64, batch 512) for a few hundred steps in fp32/TF32
and in bf16 autocast, extracts φ (20 noise draws) and runs k-means at k = 1,000 on 200,000 × 512 points,
then prints img/s, the achieved FLOP/s as a fraction of this GPU's own bf16 and TF32 matmul FLOP/s
(measured here), and peak GPU memory. Images are random tensors already on the GPU: this measures the
GPU's work, not the loader (benchmarks/bench_train.py measures the loader).

    python benchmarks/gpu_check.py            # ≤ 8 minutes on one H100-class GPU
    python benchmarks/gpu_check.py --smoke    # a tiny version of the same, also on a CPU
"""

import argparse
import time
from contextlib import contextmanager

import torch
from torch.utils.flop_counter import FlopCounterMode

from semcore.cluster import kmeans
from semcore.model import UNetFlex
from semcore.phi import noise_averaged_means
from semcore.plan.settings import UNetConfig
from semcore.runtime import Precision, resolve_device
from semcore.train import denoising_loss

PAPER = UNetConfig(channels=[64, 128, 256, 512], enc_convs=[2, 2, 2], mid_convs=3, dec_convs=[5, 6, 7])
SMOKE = UNetConfig(channels=[8, 16, 32])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timed(device: torch.device, result: dict):
    synchronize(device)
    start = time.perf_counter()
    yield
    synchronize(device)
    result["seconds"] = time.perf_counter() - start


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 20) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    t = {}
    with timed(device, t):
        for _ in range(repeats):
            a @ b
    return repeats * 2 * n**3 / t["seconds"]


def train_flops_per_image(config: UNetConfig, size: int) -> float:
    with FlopCounterMode(display=False) as counter:
        UNetFlex(config)(torch.rand(1, 3, size, size)).sum().backward()
    return counter.get_total_flops()


def training(config: UNetConfig, precision: Precision, device, size: int, batch: int, steps: int) -> float:
    """img/s of the training step (forward, loss, backward, Adam), after a warm-up of 10 steps."""
    precision.apply(device)
    model = UNetFlex(config).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    sigmas = torch.rand(batch, device=device) ** 2

    def step():
        with precision.autocast_context(device):
            loss = denoising_loss(model, x, sigmas, "none")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(10):
        step()
    t = {}
    with timed(device, t):
        for _ in range(steps):
            step()
    return steps * batch / t["seconds"]


def phi_rate(config: UNetConfig, precision: Precision, device, size: int, images: int) -> float:
    """Images per second of φ at one σ with 20 noise draws."""
    model = UNetFlex(config).to(device, memory_format=torch.channels_last).eval()
    x = torch.rand(images, 3, size, size, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    t = {}
    with torch.no_grad(), precision.autocast_context(device):
        noise_averaged_means(model, x[:2], 0.2, 20, generator)
        with timed(device, t):
            noise_averaged_means(model, x, 0.2, 20, generator)
    return images / t["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a tiny model and sizes: checks the script, measures nothing")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = resolve_device("cpu" if args.smoke else args.device)
    config, size, batch, steps = (SMOKE, 16, 8, 3) if args.smoke else (PAPER, 64, 512, 200)
    points, k, phi_images = (2_000, 10, 8) if args.smoke else (200_000, 1_000, 256)
    n = 256 if args.smoke else 8192
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, UNetFlex {config.channels}, {size}×{size}, batch {batch}")

    peaks = {"bf16": matmul_flops(device, torch.bfloat16, n), "tf32": matmul_flops(device, torch.float32, n)}
    print(f"matmul {n}²: bf16 {peaks['bf16'] / 1e12:.1f} TFLOP/s, fp32/TF32 {peaks['tf32'] / 1e12:.1f} TFLOP/s")
    flops = train_flops_per_image(config, size)
    print(f"training FLOPs per image (forward + backward): {flops / 1e9:.2f} GFLOP")
    for label, precision, peak in (("fp32/TF32", Precision(autocast="none"), peaks["tf32"]),
                                   ("bf16 autocast", Precision(autocast="bf16"), peaks["bf16"])):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rate = training(config, precision, device, size, batch, steps)
        memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        print(f"train {label:13s}: {rate:8.0f} img/s, {rate * flops / 1e12:6.1f} TFLOP/s = "
              f"{rate * flops / peak:.0%} of its matmul peak, peak memory {memory:.1f} GiB")
        print(f"phi   {label:13s}: {phi_rate(config, precision, device, size, phi_images):8.0f} img/s "
              "(one σ, 20 noise draws)")
    data = torch.randn(points, config.channels[-1], device=device).relu()
    t = {}
    with timed(device, t):
        result = kmeans(data, k, n_init=1, seed=0, device=device)
    print(f"k-means k={k} on {points:,}×{config.channels[-1]}: {t['seconds']:.1f} s, {result.n_iter} Lloyd "
          "iterations on all points")


if __name__ == "__main__":
    main()
