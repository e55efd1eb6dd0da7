"""The workflow config (config.yaml, validated against SCHEMA, semcore/config.schema.yaml) → typed settings.

The schema checks each key alone (semcore.schema lists every error, a line each); `check` adds the rules
that tie keys together, and every error names the offending key. The settings of the model and of
training live here as plain dataclasses (semcore.model and semcore.train import them): Snakemake plans
the workflow without importing torch.

The schema is the one source of every default: Snakemake fills a config's missing keys from it, and the
settings dataclasses take their field defaults from it (`default`), so that UNetConfig() in Python is the
workflow's default model.
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

SCHEMA = Path(__file__).with_name("config.schema.yaml")


@functools.cache
def load_schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def schema_of(key: str) -> dict:
    """The schema of a dotted config key: 'train.lr', 'sample.matching.tol'."""
    node = load_schema()
    for part in key.split("."):
        node = node["properties"][part]
    return node


def section_defaults(key: str) -> dict:
    """The defaults of a config section ('sample'), nested, as Snakemake fills them in from the schema."""
    def defaults(node):
        if "properties" not in node:
            return node.get("default")
        return {name: defaults(sub) for name, sub in node["properties"].items() if "default" in sub}

    return defaults(schema_of(key))


def default(key: str):
    """A dataclass field whose default is the schema's default of a config key ('train.lr')."""
    value = schema_of(key)["default"]
    if isinstance(value, (list, dict)):  # each instance gets its own copy, as dataclasses require
        return field(default_factory=lambda: copy.deepcopy(value))
    return field(default=value)


NORMS = ("layer", "batch", "none")
LOSS_WEIGHTINGS = ("none", "inv_sigma_squared")
# The schema's fallbacks where a config gives neither the steps nor the epochs (not defaults: see there).
DEFAULT_STEPS = schema_of("train.steps")["fallback"]
DEFAULT_HALVE_EVERY = schema_of("train.lr_halve_every")["fallback"]
MNIST5K_IMAGES, MNIST5K_SIDE = 5000, 28  # the digits of data.source mnist5k (sources.mnist5k)


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


def snapshot_name(step: int) -> str:
    """The file of the weights train keeps at `step` (model/snapshots/)."""
    return f"step-{step:06d}.pt"


class ConfigError(ValueError):
    pass


def suggestion(word, choices) -> str:
    """' (did you mean 'x'?)' for the choice closest to a misspelt word; '' if none is close."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [choice for choice in choices if isinstance(choice, str)], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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


def check_pretrained(pretrained: dict, model: UNetConfig) -> None:
    """The network to import exists and, where the authors' arguments file tells its architecture, is the
    configured one (checked again on its weights when it is imported)."""
    path = Path(pretrained["path"])
    weights = path / "model.pt" if pretrained["format"] == "authors" and path.is_dir() else path
    if not weights.is_file():
        raise ConfigError(f"model.pretrained.path: {weights} is not a file (format semcore: a model.pt this package "
                          "wrote; authors: their folder with model.pt, or its model.pt)")
    arguments = weights.parent / "exp_arguments.pkl"
    if pretrained["format"] == "authors" and arguments.is_file():
        from semcore import authors  # only here: planning a workflow without it imports no torch

        try:
            found = authors.config_from_arguments(authors.read_arguments(arguments))
        except (ValueError, pickle.UnpicklingError) as error:
            raise ConfigError(f"model.pretrained.path: {error}") from None
        differences = architecture_differences(model, found)
        if differences:
            raise ConfigError(f"model.pretrained.path: {arguments} describes another architecture than the "
                              f"model section ({'; '.join(differences)}): make the config describe it")


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
    if config["model"]["pretrained"]:
        check_pretrained(config["model"]["pretrained"], model)
    options = data[data["source"]]
    if data["source"] == "folder":
        from semcore.sources import check_folder

        if not options["path"]:
            raise ConfigError("data.folder.path: give the directory of images")
        try:
            check_folder(options["path"])
        except ValueError as error:
            raise ConfigError(str(error)) from None
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
    if data["source"] == "mnist5k" and min_size(data) > MNIST5K_SIDE:
        raise ConfigError(f"data.min_size: mnist5k's digits are {MNIST5K_SIDE}×{MNIST5K_SIDE}, below min_size "
                          f"{min_size(data)} (null: data.size): give min_size ≤ {MNIST5K_SIDE} to upsample them")
    if data["source"] == "patches":
        check_patches(options, min_size(data))
    check_image_counts(config)
    check_sampling(config)
    if config["train"].get("epochs") is None:
        emergence_steps(config, train_images=1)  # the schedule in steps: the steps train keeps are known now


def check_patches(options: dict, smallest: int) -> None:
    """Crop sides in order, not all below min_size (those crops are skipped), of bundled photographs."""
    if options["crop_min"] > options["crop_max"]:
        raise ConfigError("data.patches.crop_min: must be ≤ crop_max")
    if options["crop_max"] < smallest:
        raise ConfigError(f"data.patches.crop_max: {options['crop_max']} is below data.min_size {smallest} "
                          "(null: data.size): every crop would be skipped")
    if options["images"]:
        from semcore.sources import PHOTOGRAPHS as known

        unknown = [name for name in options["images"] if name not in known]
        if unknown:
            raise ConfigError(f"data.patches.images: unknown {unknown[0]!r}{suggestion(unknown[0], known)}; "
                              f"bundled: {', '.join(known)}")


def source_images(data: dict) -> int | None:
    """The images the source yields at most (inputs below min_size are skipped), where that is known without
    decoding them (a folder's files are listed): None for ImageNet64 (counting means opening its batches)."""
    from semcore import sources

    options = data[data["source"]]
    if data["source"] == "synthetic":
        return options["n_images"]
    if data["source"] == "mnist5k":
        return MNIST5K_IMAGES
    if data["source"] == "patches":
        return options["n_per_image"] * len(options["images"] or sources.PHOTOGRAPHS)
    if data["source"] == "folder":
        return len(sources.input_files(Path(options["path"])))
    return None


def check_image_counts(config: dict) -> None:
    """Refuse a k above the images k-means clusters, and more sampling targets than the source's images."""
    data, cluster = config["data"], config["cluster"]
    images = source_images(data)
    source = f"the {images} images of data.source {data['source']}"
    limits = [(images, source), (cluster["max_images"], f"cluster.max_images {cluster['max_images']}")]
    limits = [(n, what) for n, what in limits if n is not None]
    if limits:
        clustered, what = min(limits)
        too_many = [k for k in cluster["ks"] if k > clustered]
        if too_many:
            raise ConfigError(f"cluster.ks: k={too_many[0]} is more than {what}; k-means needs k ≤ {clustered}")
    targets = config["sample"]["targets"]
    if images is not None and isinstance(targets, int) and targets > images:
        raise ConfigError(f"sample.targets: {targets} is more than {source} (targets are the first test "
                          f"images: about {round(images * data['test_fraction'])})")


def training_images(manifest_path: str | Path) -> int:
    """Images written to the train split: what converts a schedule in epochs to steps."""
    import pandas as pd

    manifest = pd.read_parquet(manifest_path, columns=["split", "status"])
    return int(((manifest.split == "train") & (manifest.status == "written")).sum())


def final_step(config: dict, train_images: int) -> int | None:
    """The last training step: the trained network's; None with model.pretrained (no training)."""
    if config["model"]["pretrained"]:
        return None
    return train_config(config).in_steps(train_images).steps


def emergence_steps(config: dict, train_images: int) -> list[int]:
    """The snapshot steps the emergence analysis reads: emergence.steps, or every one train keeps; none
    with model.pretrained (it keeps step 0 alone)."""
    if config["model"]["pretrained"]:
        return []
    train = train_config(config).in_steps(train_images)
    kept, steps = train.snapshot_steps(), config["emergence"]["steps"]
    if steps is None:
        return kept
    missing = sorted(set(steps) - set(kept))
    if missing:
        raise ConfigError(f"emergence.steps: {missing} are not kept by training (train.snapshot_every "
                          f"{train.snapshot_every}, {train.steps} steps: {kept})")
    return sorted(set(steps))


# Sampling. With max_steps null a sample whose σ estimate never falls below sigma_final (a denoiser that
# misjudges its noise) still stops: after this many times the designed step count.
STEP_CAP_FACTOR = 3

# The authors' unconditional baseline (22_representation_in_UNet_denoiser, generate_samples_unconditional.py).
AUTHORS_UNCONDITIONAL = dict(sigma_0=3.0, sigma_final=0.04, h0=0.01, beta=0.05, h_schedule=False, max_steps=20000,
                             start="grey")


def step_size(h0: float, t: int, schedule: bool) -> float:
    """The ascent's step t: h0 (the authors' default), or h_t = h0·t / (1 + h0·(t − 1)), small while σ is
    large and → 1 as the image emerges."""
    return h0 * t / (1 + h0 * (t - 1)) if schedule else h0


def designed_steps(ascent: dict) -> int:
    """Score steps the ascent takes by design: step t sees σ_t = σ_0 Π_{s<t} (1 − β h_s) (each step is
    designed to leave (1 − β h_s) of its noise), and the first with σ_t < sigma_final is the last."""
    sigma_0, sigma_final, h0, beta = (ascent[key] for key in ("sigma_0", "sigma_final", "h0", "beta"))
    if not ascent["h_schedule"]:  # σ_0 (1 − β h0)^(t − 1) < sigma_final, solved for t (tens of thousands)
        return max(1, math.floor(math.log(sigma_final / sigma_0) / math.log1p(-beta * h0)) + 2)
    t, sigma = 1, sigma_0
    while sigma >= sigma_final:
        sigma *= 1 - beta * step_size(h0, t, True)
        t += 1
    return t


def sampler_final_sigma(sample: dict) -> float:
    """The σ the guided sampler ends at (the config's sample section): samples are scored there."""
    return sample["schedule"]["sigma_min"] if sample["algorithm"] == "fixed" else sample["ascent"]["sigma_final"]


def resolved_ascent(ascent: dict) -> dict:
    """Ascent settings with max_steps null replaced by its cap, STEP_CAP_FACTOR × the designed count."""
    return {**ascent, "max_steps": ascent["max_steps"] or STEP_CAP_FACTOR * designed_steps(ascent)}


def unconditional_sampler(sample: dict) -> tuple[str, dict]:
    """sample.unconditional resolved: (its start, its ascent settings). A preset name, or an object whose
    missing keys come from the authors' preset."""
    chosen = sample["unconditional"]
    if chosen == "ascent":
        settings = {**sample["ascent"], "start": sample["start"]}
    else:
        settings = {**AUTHORS_UNCONDITIONAL, **(chosen if isinstance(chosen, dict) else {})}
    start = settings.pop("start")
    return start, resolved_ascent(settings)


def check_sampling(config: dict) -> None:
    """Refuse a σ schedule or ascent that does not descend, and a max_steps that would stop an ascent before
    its designed end at sigma_final."""
    sample = config["sample"]
    if sample["schedule"]["sigma_min"] > sample["schedule"]["sigma_max"]:
        raise ConfigError(f"sample.schedule.sigma_min: {sample['schedule']['sigma_min']} is above sigma_max "
                          f"{sample['schedule']['sigma_max']} (the schedule descends from sigma_max to sigma_min)")
    # A preset reaches the second only when valid: the authors' is, and ascent is sample.ascent, checked first.
    for section, ascent in (("sample.ascent", resolved_ascent(sample["ascent"])),
                            ("sample.unconditional", unconditional_sampler(sample)[1])):
        if ascent["sigma_final"] >= ascent["sigma_0"]:
            raise ConfigError(f"{section}.sigma_final: {ascent['sigma_final']} must be below sigma_0 "
                              f"{ascent['sigma_0']} (the ascent removes noise from sigma_0 down to sigma_final)")
        designed = designed_steps(ascent)
        if ascent["max_steps"] < designed:
            schedule = "growing h_t" if ascent["h_schedule"] else "fixed h"
            raise ConfigError(f"{section}.max_steps: {ascent['max_steps']} steps stop the ascent before σ reaches "
                              "sigma_final: "
                              f"σ {ascent['sigma_0']} → {ascent['sigma_final']} at h0 {ascent['h0']} ({schedule}), "
                              f"β {ascent['beta']} takes {designed} steps by design; raise it, or give null "
                              f"(a cap of {STEP_CAP_FACTOR}× the design)")
