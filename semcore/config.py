"""The workflow config (config.yaml, validated against schemas/config.schema.yaml) → typed settings.

The schema checks each key alone; `check` adds the rules that tie keys together, and every error
names the offending key. The settings of the model and of training live here as plain dataclasses
(semcore.model and semcore.train import them): Snakemake plans the workflow without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NORMS = ("layer", "batch", "none")


@dataclass
class UNetConfig:
    in_channels: int = 3
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])  # per level; last is the middle
    enc_convs: int | list[int] = 2  # per encoder block, outermost first; an int for all blocks
    mid_convs: int = 3
    dec_convs: int | list[int] = 2  # likewise; D1's count includes the output conv
    norm: str = "layer"  # layer: std over (C, H, W) per image; batch: std over (N, H, W) per channel; none
    bias: bool = True  # convs' bias; without it a layer-normed net is blind to the input's scale
    kernel_size: int = 3

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
    processes: int | None = None  # DDP processes on this node; None: one per GPU of the job on CUDA, else 1

    def __post_init__(self):
        if self.sigma_distribution not in ("quadratic", "uniform"):
            raise ValueError(f"train.sigma_distribution: {self.sigma_distribution!r} is not quadratic or uniform")
        if self.loss_weighting not in ("none", "inv_sigma"):
            raise ValueError(f"train.loss_weighting: {self.loss_weighting!r} is not none or inv_sigma")
        if self.loss_weighting == "inv_sigma" and self.sigma_min <= 0:
            raise ValueError("train.sigma_min: must be > 0 with loss_weighting inv_sigma (1/σ weights)")
        if not 0 <= self.sigma_min <= self.sigma_max:
            raise ValueError("train.sigma_min, sigma_max: need 0 ≤ sigma_min ≤ sigma_max")


class ConfigError(ValueError):
    pass


def model_config(config: dict) -> UNetConfig:
    return UNetConfig(in_channels=config["data"]["channels"], **config["model"])


def train_config(config: dict) -> TrainConfig:
    return TrainConfig(**config["train"], device=config["device"])


def min_size(data: dict) -> int:
    return data["min_size"] or data["size"]


def check(config: dict) -> None:
    """Raise ConfigError naming the key for every inconsistency the schema cannot express."""
    data = config["data"]
    try:
        model = model_config(config)
        train_config(config)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None
    if data["size"] % 2**model.num_blocks:
        raise ConfigError(f"data.size: {data['size']} must be divisible by 2^{model.num_blocks} "
                          f"(the UNet pools {model.num_blocks} times)")
    options = data[data["source"]]
    if data["source"] == "folder" and not (options.get("path") and Path(options["path"]).is_dir()):
        raise ConfigError(f"data.folder.path: {options.get('path')!r} is not a directory")
    if data["source"] == "imagenet64":
        if not options["paths"]:
            raise ConfigError("data.imagenet64.paths: list the npz batch files")
        missing = [p for p in options["paths"] if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"data.imagenet64.paths: not found: {missing}")
    if config["stats"]["sigma"] not in config["phi"]["sigmas"]:
        raise ConfigError(f"stats.sigma: {config['stats']['sigma']} is not one of phi.sigmas {config['phi']['sigmas']}")
    missing = [s for s in config["cluster"]["sigmas"] if s not in config["phi"]["sigmas"]]
    if missing:
        raise ConfigError(f"cluster.sigmas: {missing} not in phi.sigmas {config['phi']['sigmas']}")
    if data["source"] == "patches" and options["crop_min"] > options["crop_max"]:
        raise ConfigError("data.patches.crop_min: must be ≤ crop_max")
