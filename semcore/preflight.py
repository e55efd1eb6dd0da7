"""Pre-flight check on a GPU node, before a long cluster run: does this node run the workflow?

    python -m semcore.preflight --configfile configs/imagenet64-cluster.yaml [--gpus 4]

Checks, each printed with its finding: the config is valid; torch sees the GPUs the job was given
(CUDA build, device count and names, bf16, free memory) and runs a matmul on each; NCCL is there for a
multi-GPU `train`; the file system of results/<name> has room for the run's outputs (estimated from
the config and the number of input images). Exits 1 if any check fails, naming it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from semcore.plan.checks import validated
from semcore.plan.sizes import emergence_steps, final_step, source_images

# Bytes a 64×64 RGB PNG of a natural image takes, as a fraction of its raw pixels (downsampled ImageNet
# compresses little), plus the tar header and the json of each member.
PNG_FRACTION, PER_IMAGE_OVERHEAD = 0.8, 1536


def input_images(config: dict) -> int:
    """How many images the configured source yields (for the size estimate)."""
    return source_images(config["data"], open_batches=True)  # ImageNet64: its batches' labels, counted


def output_bytes(config: dict, images: int) -> dict[str, int]:
    """Estimated bytes of the large outputs: shards, φ of the trained network and of its snapshots."""
    data, channels = config["data"], config["model"]["channels"][-1]
    clustered = min(images, config["cluster"]["max_images"] or images)
    train_images = round(images * (1 - data["test_fraction"]))
    # Step 0 (the baseline) and every analysed step but the last, whose φ is the trained network's.
    snapshots = len(({0} | set(emergence_steps(config, train_images))) - {final_step(config, train_images)})
    return {
        "shards": int(images * (PNG_FRACTION * data["size"] ** 2 * data["channels"] + PER_IMAGE_OVERHEAD)),
        "phi": images * len(config["phi"]["sigmas"]) * channels * 4,
        "phi_snapshots": snapshots * clustered * len(config["cluster"]["sigmas"]) * channels * 4,
    }


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def check_disk(config: dict) -> tuple[bool, str]:
    images = input_images(config)
    need = output_bytes(config, images)
    results = Path("results") / config["name"]
    existing = next(p for p in [results, *results.absolute().parents] if p.exists())
    free = shutil.disk_usage(existing).free
    parts = ", ".join(f"{name} {gigabytes(size)}" for name, size in need.items())
    total = sum(need.values())
    return free >= 1.2 * total, (f"{images:,} images: ~{gigabytes(total)} of outputs ({parts}); "
                                 f"{gigabytes(free)} free at {existing}")


def check_cuda(gpus: int) -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, (f"torch {torch.__version__} sees no CUDA device (built for CUDA "
                       f"{torch.version.cuda or 'none: a CPU-only wheel'})")
    count = torch.cuda.device_count()
    found = []
    for index in range(count):
        free, total = torch.cuda.mem_get_info(index)
        x = torch.randn(1024, 1024, device=f"cuda:{index}")
        ok = torch.allclose((x @ x.T).diagonal(), x.square().sum(dim=1), rtol=1e-2)
        found.append(f"cuda:{index} {torch.cuda.get_device_name(index)} ({gigabytes(free)} free of "
                     f"{gigabytes(total)}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}, "
                     f"matmul {'ok' if ok else 'WRONG'})")
        if not ok:
            return False, "; ".join(found)
    return count >= gpus, f"{count} device(s), {gpus} wanted: " + "; ".join(found)


def check_nccl(gpus: int) -> tuple[bool, str]:
    if gpus < 2:
        return True, "one GPU: not needed"
    if not dist.is_nccl_available():
        return False, "torch has no NCCL: a multi-GPU train cannot start"
    return True, f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", default="config.yaml")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs the train job will have (profile: train: gpu)")
    args = parser.parse_args(argv)
    try:
        config = validated(yaml.safe_load(Path(args.configfile).read_text()))
    except Exception as error:  # any reason the config cannot be used is the finding
        print(f"[FAIL] config: {args.configfile}: {error}")
        return 1
    print(f"[ok  ] config: {args.configfile} is valid")
    failed = []
    for name, finding_of in (("cuda", lambda: check_cuda(args.gpus)), ("nccl", lambda: check_nccl(args.gpus)),
                             ("disk", lambda: check_disk(config))):
        ok, finding = finding_of()
        print(f"[{'ok' if ok else 'FAIL':4}] {name}: {finding}")
        if not ok:
            failed.append(name)
    if failed:
        print(f"pre-flight: {', '.join(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
