"""Where the network runs: device choice, arithmetic, CPU allocator tuning; and saving its tensors."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from dataclasses import dataclass

import torch

from semcore.files import atomic
from semcore.plan.schema import default

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def as_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [B, C, H, W] → float in [0, 1], channels-last, on the device (sent as uint8: 4× less to copy)."""
    images = images.to(device, non_blocking=True).float().div_(255)
    return images.contiguous(memory_format=torch.channels_last)


def resolve_device(name: str) -> torch.device:
    """"auto": CUDA when available, else the CPU; anything else as torch spells it ("cuda:1"). A CUDA device
    that torch cannot use (a CPU-only wheel, no driver, no GPU in the job) fails here, at once. Logged: a
    job's log says where it ran."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device: {name!r}, but torch {torch.__version__} sees no CUDA device (built for CUDA "
            f"{torch.version.cuda or 'none: a CPU-only wheel'}; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Install a CUDA build of torch, run on a GPU "
            "node, or set device: cpu (--config device=cpu) to run on the CPU on purpose")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device: {name!r}, but this job sees {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        log.info("device %s: %s, %.1f GiB, CUDA %s", device, properties.name, properties.total_memory / 2**30,
                 torch.version.cuda)
    else:
        log.info("device %s, %d thread(s)", device, torch.get_num_threads())
    return device


@dataclass
class Precision:
    """How the network's arithmetic runs on a GPU (CPU runs use autocast only, and are fp32 by default).

    autocast bf16: convs and matmuls in bfloat16, the norms' statistics and the losses in fp32;
    tf32: fp32 convs and matmuls on TF32 tensor cores (Ampere and later); cudnn_benchmark: cuDNN picks the
    fastest conv algorithm per shape (nondeterministic choice); deterministic: only deterministic GPU kernels
    (torch.use_deterministic_algorithms, cuDNN's deterministic convs, cuBLAS's fixed workspace; it turns
    cudnn_benchmark off): the same run twice on the same GPU gives the same bits, somewhat slower."""
    autocast: str = default("precision.autocast")  # none | bf16
    tf32: bool = default("precision.tf32")
    cudnn_benchmark: bool = default("precision.cudnn_benchmark")
    deterministic: bool = default("precision.deterministic")

    def __post_init__(self):
        if self.autocast not in ("none", "bf16"):
            raise ValueError(f"precision.autocast: {self.autocast!r} is not none or bf16")

    def apply(self, device: torch.device) -> None:
        """Set the global backend switches for this process."""
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            torch.backends.cudnn.allow_tf32 = self.tf32
            torch.backends.cudnn.benchmark = self.cudnn_benchmark and not self.deterministic
            if self.deterministic:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
                torch.backends.cudnn.deterministic = True
                torch.use_deterministic_algorithms(True)

    def autocast_context(self, device: torch.device):
        """The autocast region of a forward pass (a no-op context for fp32)."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast == "bf16")

    def describe(self, device: torch.device) -> dict:
        """What the outputs record: the device and the arithmetic actually used on it."""
        cuda = device.type == "cuda"
        return dict(device=torch.cuda.get_device_name(device) if cuda else "cpu", autocast=self.autocast,
                    tf32=self.tf32 and cuda, cudnn_benchmark=self.cudnn_benchmark and cuda and not self.deterministic,
                    deterministic=self.deterministic and cuda, torch=torch.__version__)


def tune_allocator() -> None:
    """Keep freed activation buffers in the heap instead of returning them to the OS each step.

    On CPU, glibc's defaults mmap and unmap every large activation tensor, every step; measured on
    2 cores, training the default model went from ~155 to ~178 img/s. A no-op off glibc.
    """
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return
    for parameter, value in ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 256 << 20)):
        if not mallopt(parameter, value):
            log.debug("mallopt(%d, %d) refused", parameter, value)


def save_torch(obj, path: str | os.PathLike) -> None:
    """torch.save, atomic. Saved into an open file, the archive's inner folder is named "archive", not after
    the temporary file: the same tensors give the same bytes."""
    with atomic(path) as tmp, open(tmp, "wb") as file:
        torch.save(obj, file)
