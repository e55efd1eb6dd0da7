"""The workflow config (config.yaml, validated against schemas/config.schema.yaml) → typed settings.

The schema checks each key alone; `check` adds the rules that tie keys together, and every error
names the offending key.
"""

from __future__ import annotations

from pathlib import Path

from semcore.model import UNetConfig
from semcore.train import TrainConfig


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
    if data["source"] == "patches" and options["crop_min"] > options["crop_max"]:
        raise ConfigError("data.patches.crop_min: must be ≤ crop_max")
