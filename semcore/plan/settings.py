"""The settings of the model and of training as plain dataclasses, their defaults the schema's.

Plain data, no torch: the rules plan with them, semcore.model and semcore.train build and train from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from semcore.plan.schema import default, schema_of

NORMS = ("layer", "batch", "none")
LOSS_WEIGHTINGS = ("none", "inv_sigma_squared")
# The schema's fallbacks where a config gives neither the steps nor the epochs (not defaults: see there).
DEFAULT_STEPS = schema_of("train.steps")["fallback"]
DEFAULT_HALVE_EVERY = schema_of("train.lr_halve_every")["fallback"]


@dataclass
class UNetConfig:
    in_channels: int = default("data.channels")
    channels: list[int] = default("model.channels")  # per level; last is the middle
    enc_convs: int | list[int] = default("model.enc_convs")  # per encoder block, outermost first; an int for all
    mid_convs: int = default("model.mid_convs")
    dec_convs: int | list[int] = default("model.dec_convs")  # likewise; D1's count includes the output conv
    norm: str = default("model.norm")  # layer: std over (C, H, W) per image; batch: over (N, H, W) per channel
    bias: bool = default("model.bias")  # convs' bias; without it a layer-normed net is blind to the input's scale
    kernel_size: int = default("model.kernel_size")
    # Bias on the 2×2 transposed convs into D2…Dn (never into D1): the authors' models built
    # before their `upsample_with_bias` switch have it.
    upsample_bias: bool = default("model.upsample_bias")

    def __post_init__(self):
        n = self.num_blocks
        if n < 1:
            raise ValueError("model.channels: give at least two levels (encoder blocks + middle)")
        self.channels = list(self.channels)
        self.enc_convs, self.dec_convs = ([c] * n if isinstance(c, int) else list(c)
                                          for c in (self.enc_convs, self.dec_convs))
        for key in ("enc_convs", "dec_convs"):
            if len(getattr(self, key)) != n:
                raise ValueError(f"model.{key}: needs {n} entries, one per encoder/decoder block (model.channels has {n + 1} levels)")
        if min(self.enc_convs) < 1 or self.mid_convs < 1 or min(self.dec_convs[1:], default=1) < 1:
            raise ValueError("model.enc_convs, mid_convs, dec_convs: every block needs at least one conv")
        if self.dec_convs[0] < 2:
            raise ValueError("model.dec_convs[0]: the outermost decoder block needs ≥ 2 convs (one is the output conv)")
        if self.norm not in NORMS:
            raise ValueError(f"model.norm: {self.norm!r} is not one of {NORMS}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"model.kernel_size: {self.kernel_size} must be odd (only then does a conv padded by "
                             "kernel_size // 2 keep the image size)")

    @property
    def num_blocks(self) -> int:
        return len(self.channels) - 1

    @property
    def block_names(self) -> list[str]:
        """Blocks whose channel means ā are read: E1…En, M, Dn…D2 (D1 outputs the image)."""
        n = self.num_blocks
        return [f"E{b + 1}" for b in range(n)] + ["M"] + [f"D{b + 1}" for b in reversed(range(1, n))]


@dataclass
class TrainConfig:
    # = None: the keys without a schema default (a config Snakemake filled lacks them too)
    steps: int | None = None  # training length in optimiser steps, or
    epochs: float | None = None  # in passes over the training images; neither: DEFAULT_STEPS
    batch_size: int = default("train.batch_size")
    lr: float = default("train.lr")
    lr_halve_every: int | None = None  # steps between halvings of the learning rate, or
    lr_halve_every_epochs: float | None = None  # epochs between them; neither: DEFAULT_HALVE_EVERY steps
    sigma_min: float = default("train.sigma_min")  # noise levels, pixels in [0, 1]
    sigma_max: float = default("train.sigma_max")
    sigma_distribution: str = default("train.sigma_distribution")  # quadratic: √σ uniform (more small σ); uniform
    loss_weighting: str = default("train.loss_weighting")  # none: Σ(x̂ − x)² per image; inv_sigma_squared: ÷σ²
    log_every: int = default("train.log_every")
    eval_every: int = default("train.eval_every")
    eval_sigmas: list[float] = default("train.eval_sigmas")
    eval_images: int = default("train.eval_images")
    checkpoint_every: int = default("train.checkpoint_every")
    snapshot_every: int | None = default("train.snapshot_every")  # weights kept at 0, every this many steps, the last
    shuffle_buffer: int = default("train.shuffle_buffer")
    seed: int = default("train.seed")
    device: str = default("device")  # auto: CUDA when available, else CPU
    processes: int | None = None  # DDP processes on this node; None: one per GPU of the job on CUDA, else 1
    loader_workers: int | None = default("train.loader_workers")  # per DDP process; None: see train.loader_workers

    def __post_init__(self):
        for steps, epochs in (("steps", "epochs"), ("lr_halve_every", "lr_halve_every_epochs")):
            if getattr(self, steps) is not None and getattr(self, epochs) is not None:
                raise ValueError(f"train.{steps}, train.{epochs}: give one or the other, not both")
        if self.steps is None and self.epochs is None:
            self.steps = DEFAULT_STEPS
        if self.lr_halve_every is None and self.lr_halve_every_epochs is None:
            self.lr_halve_every = DEFAULT_HALVE_EVERY
        if self.sigma_distribution not in ("quadratic", "uniform"):
            raise ValueError(f"train.sigma_distribution: {self.sigma_distribution!r} is not quadratic or uniform")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"train.loss_weighting: {self.loss_weighting!r} is not one of {LOSS_WEIGHTINGS}")
        if self.loss_weighting == "inv_sigma_squared" and self.sigma_min <= 0:
            raise ValueError("train.sigma_min: must be > 0 with loss_weighting inv_sigma_squared (1/σ² weights)")
        if not 0 <= self.sigma_min <= self.sigma_max:
            raise ValueError("train.sigma_min, sigma_max: need 0 ≤ sigma_min ≤ sigma_max")
        if self.processes and self.batch_size % self.processes:
            raise ValueError(f"train.batch_size: {self.batch_size} (the global batch) does not split evenly "
                             f"between train.processes {self.processes}")

    def steps_per_epoch(self, train_images: int) -> int:
        """Optimiser steps in one pass over the training images: the authors' DataLoader keeps the last,
        partial batch."""
        return math.ceil(train_images / self.batch_size)

    def in_steps(self, train_images: int) -> TrainConfig:
        """The same schedule with its length and lr halvings in optimiser steps (epochs converted)."""
        per_epoch = self.steps_per_epoch(train_images)
        steps = self.steps if self.epochs is None else math.ceil(self.epochs * per_epoch)
        halve_every = (self.lr_halve_every if self.lr_halve_every_epochs is None
                       else max(1, round(self.lr_halve_every_epochs * per_epoch)))
        return replace(self, steps=steps, epochs=None, lr_halve_every=halve_every, lr_halve_every_epochs=None)

    def snapshot_steps(self) -> list[int]:
        """The steps whose weights training keeps (the schedule in steps): 0, the untrained network, every
        snapshot_every steps, and the last."""
        if self.steps is None:
            raise ValueError("train: snapshot steps need the schedule in steps; convert epochs with in_steps")
        every = self.snapshot_every or self.steps
        return sorted({0, *range(every, self.steps + 1, every), self.steps})



def architecture(config: dict) -> dict:
    """The model section less `pretrained`: UNetConfig's arguments."""
    return {key: value for key, value in config["model"].items() if key != "pretrained"}


def model_config(config: dict) -> UNetConfig:
    return UNetConfig(in_channels=config["data"]["channels"], **architecture(config))


def architecture_differences(configured: UNetConfig, found: UNetConfig) -> list[str]:
    """`key: configured …, found …` for each setting in which two architectures differ, named as in the config."""
    names = {"in_channels": "data.channels"}
    return [f"{names.get(key, 'model.' + key)}: configured {value!r}, found {getattr(found, key)!r}"
            for key, value in vars(configured).items() if getattr(found, key) != value]


def train_config(config: dict) -> TrainConfig:
    return TrainConfig(**config["train"], device=config["device"])


def min_size(data: dict) -> int:
    return data["min_size"] or data["size"]

