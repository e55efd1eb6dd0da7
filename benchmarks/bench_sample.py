"""Sampler wall time against the network calls it makes, and samples/s at batch 1 against batch 32.

Each sampler counts its network calls by (kind, batch size); the same calls are then timed alone on the
same shapes in the same run: denoise = the full forward (no graph), phi = encoder + middle block (no
graph), phi_grad = the same with a graph to the pixels, phi_grad_backward = its backward. The ratio of
the sampler's wall time to the sum of those times is its overhead (goal <= 1.10).
Usage: python benchmarks/bench_sample.py [--steps 5] [--max-iter 10]
"""

import argparse
import logging
import time
from collections import Counter

import torch

from semcore import sample
from semcore.model import UNetConfig, UNetFlex

MODEL = UNetConfig(channels=[16, 32, 64, 128], mid_convs=3)  # the default config's model
SIZE, N_NOISE = 32, 10


def inputs(batch: int) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)


def seconds_per_call(model: UNetFlex, kind: str, batch: int, repeats: int = 5) -> float:
    """One call of `kind` on `batch` images, timed alone (after a warm-up call)."""
    x = inputs(batch)

    def call():
        if kind == "denoise":
            with torch.no_grad():
                model(x)
        elif kind == "phi":
            with torch.no_grad():
                model.middle_means(x)
        else:
            y = x.clone().requires_grad_(True)
            loss = model.middle_means(y).square().sum()
            if kind == "phi_grad_backward":
                torch.autograd.grad(loss, y)

    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    seconds = (time.perf_counter() - start) / repeats
    return seconds - seconds_per_call(model, "phi_grad", batch, repeats) if kind == "phi_grad_backward" else seconds


def network_seconds(model: UNetFlex, calls: Counter) -> float:
    return sum(n * seconds_per_call(model, kind, batch) for (kind, batch), n in calls.items())


def run(model, targets: int, per_target: int, kind: str, args) -> tuple[float, Counter]:
    images = torch.rand(targets, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    rows = torch.arange(targets).repeat_interleave(per_target)
    start = torch.full((3, SIZE, SIZE), 0.5)
    began = time.perf_counter()
    result = sample.draw(model, sample.Target(images=images, n_noise=N_NOISE), rows, start, guided=kind != "unconditional",
                         algorithm=kind, schedule=dict(sigma_max=0.5, sigma_min=0.03, steps=args.steps),
                         ascent_options=dict(sigma_0=0.5, sigma_final=0.05, h0=0.1, beta=0.1, h_schedule=True,
                                             max_steps=args.ascent_steps),
                         matching=dict(lr=0.01, tol=0.01, max_iter=args.max_iter), generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - began, result.calls


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="fixed schedule steps")
    parser.add_argument("--max-iter", type=int, default=10, help="matching iterations per step, at most")
    parser.add_argument("--ascent-steps", type=int, default=40, help="ascent steps, at most")
    args = parser.parse_args()
    logging.getLogger("semcore.sample").setLevel(logging.ERROR)  # the ascent is capped on purpose here
    torch.manual_seed(0)
    model = UNetFlex(MODEL).eval().to(memory_format=torch.channels_last)
    print(f"model {MODEL.channels}, {SIZE}x{SIZE}x3, {torch.get_num_threads()} threads; "
          f"fixed: {args.steps} steps x <= {args.max_iter} matching iterations; n_noise {N_NOISE}")
    run(model, 1, 2, "fixed", args)  # warm-up
    for kind in ("fixed", "adaptive", "unconditional"):
        wall, calls = run(model, 8, 4, kind, args)
        network = network_seconds(model, calls)
        print(f"{kind:13s} batch 32: wall {wall:6.2f} s, its {sum(calls.values()):4d} network calls alone {network:6.2f} s, "
              f"ratio {wall / network:.2f}   (goal <= 1.10)")
    for batch in (1, 32):
        wall, _ = run(model, 1, batch, "fixed", args)
        print(f"fixed schedule, batch {batch:2d}: {batch / wall:7.2f} samples/s")


if __name__ == "__main__":
    main()
