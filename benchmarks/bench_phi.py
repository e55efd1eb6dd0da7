"""φ extraction against the bare network, its memory as a job's images grow, and the bytes one σ reads.

Prints (image × noise draw)/s of `semcore.phi.write_phi` on a φ job (decoding, batching, Parquet
writing included) against the bare forward (`middle_means`) on the same batch shape in the same run;
the peak RSS of φ jobs of growing size (shards of 1,000 images), each in a fresh process; and the bytes
`read_phi` reads for one σ against the file's size.
Usage: python benchmarks/bench_phi.py [--images 1000] [--n-noise 10]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from semcore import phi, shards
from semcore.model import UNetConfig, UNetFlex
from semcore.sources import synthetic

MODEL = UNetConfig(channels=[16, 32, 64, 128], mid_convs=3)  # the default config's model
SIZE, BATCH_IMAGES, SIGMAS, PER_SHARD = 32, 32, [0.1, 0.3, 0.5], 1000


def make_shards(directory: Path, n_images: int) -> list[str]:
    shards.write_shards(synthetic(n_images, 0, SIZE), directory, source="synthetic", size=SIZE, channels=3,
                        min_size=SIZE, test_fraction=0.0, seed=0, samples_per_shard=PER_SHARD)
    return sorted(map(str, directory.glob("*.tar")))


def extract(model: UNetFlex, shard_paths: list[str], out: Path, n_noise: int) -> float:
    start = time.perf_counter()
    phi.write_phi(model, shard_paths, out, sigmas=SIGMAS, n_noise=n_noise, seed=0, batch_images=BATCH_IMAGES,
                  device=torch.device("cpu"), metadata={})
    return time.perf_counter() - start


def bytes_read(fn) -> int:
    """Bytes this process read through read(2)/pread(2) while fn ran (page-cache hits included)."""
    def rchar():
        return int(next(line.split()[1] for line in open("/proc/self/io") if line.startswith("rchar")))
    before = rchar()
    fn()
    return rchar() - before


@torch.no_grad()
def bare_forward_rate(model: UNetFlex, n_noise: int, repeats: int = 20) -> float:
    x = torch.rand(BATCH_IMAGES * n_noise, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    model.middle_means(x)
    start = time.perf_counter()
    for _ in range(repeats):
        model.middle_means(x)
    return repeats * len(x) / (time.perf_counter() - start)


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM belongs to the address space (ru_maxrss is inherited across fork)."""
    status = Path("/proc/self/status")
    if status.exists():
        return next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM")) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(n_images: int, n_noise: int) -> None:
    """Runs in a fresh process: one φ job of n_images, then its peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        shard_paths = make_shards(Path(tmp) / "shards", n_images)
        before = peak_rss_mb()
        extract(UNetFlex(MODEL).eval(), shard_paths, Path(tmp) / "phi.parquet", n_noise)
        print(json.dumps({"before_mb": before, "peak_mb": peak_rss_mb()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--n-noise", type=int, default=10)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.n_noise)

    torch.manual_seed(0)
    model = UNetFlex(MODEL).eval().to(memory_format=torch.channels_last)
    with tempfile.TemporaryDirectory() as tmp:
        shard_paths = make_shards(Path(tmp) / "shards", args.images)
        extract(model, shard_paths, Path(tmp) / "warm.parquet", args.n_noise)
        seconds = extract(model, shard_paths, Path(tmp) / "phi.parquet", args.n_noise)
        read = bytes_read(lambda: phi.read_phi([str(Path(tmp) / "phi.parquet")], SIGMAS[1]))
        size = (Path(tmp) / "phi.parquet").stat().st_size
    passes = args.images * args.n_noise * len(SIGMAS)
    bare = bare_forward_rate(model, args.n_noise)
    print(f"batch                 {BATCH_IMAGES} images x {args.n_noise} noise draws, {SIZE}x{SIZE}x3, "
          f"{torch.get_num_threads()} threads")
    print(f"phi extraction        {passes / seconds:9.0f} (image x draw)/s   ({args.images} images, {len(SIGMAS)} sigmas)")
    print(f"bare forward          {bare:9.0f} (image x draw)/s   (encoder + middle, same batch shape)")
    print(f"ratio                 {passes / seconds / bare:9.2f}   (goal >= 0.9)")
    print(f"one sigma reads       {read:9d} B   of a {size} B file ({len(SIGMAS)} sigmas)")
    for n in (250, 1000, 4000, 16000):
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--n-noise", "2"], capture_output=True,
                             text=True, check=True).stdout
        rss = json.loads(out.strip().splitlines()[-1])
        print(f"peak RSS, {n:5d} images  {rss['peak_mb']:7.0f} MB   (before extraction {rss['before_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
