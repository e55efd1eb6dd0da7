"""The checks that tie config keys together, run when the workflow is planned: every error names the key.

The schema checks each key alone (semcore.plan.schema); `check` adds what the schema cannot express, so a
bad config is refused before any job starts.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from snakemake.utils import validate as fill_defaults

from semcore.plan import authors_arguments, inputs
from semcore.plan.sampler import STEP_CAP_FACTOR, designed_steps, resolved_ascent, unconditional_sampler
from semcore.plan.schema import SCHEMA, ConfigError, suggestion, validate
from semcore.plan.settings import UNetConfig, architecture_differences, min_size, model_config, train_config
from semcore.plan.sizes import MNIST5K_SIDE, emergence_steps, source_images


def validated(config: dict) -> dict:
    """The config checked and completed in place, as the workflow takes it: against the schema (every error
    on a line), its defaults filled in as Snakemake fills them, then `check`."""
    validate(config)
    fill_defaults(config, str(SCHEMA))
    check(config)
    return config


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
        try:
            found = authors_arguments.config_from_arguments(authors_arguments.read_arguments(arguments))
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
    check_source(data["source"], data[data["source"]], f"data.{data['source']}", min_size(data))
    if config["stats"]["sigma"] not in config["phi"]["sigmas"]:
        raise ConfigError(f"stats.sigma: {config['stats']['sigma']} is not one of phi.sigmas {config['phi']['sigmas']}")
    mapped = [s for s in config["stats"]["block_semantics_sigmas"] or [] if s not in config["phi"]["sigmas"]]
    if mapped:
        raise ConfigError(f"stats.block_semantics_sigmas: {mapped} not in phi.sigmas {config['phi']['sigmas']}")
    missing = [s for s in config["cluster"]["sigmas"] if s not in config["phi"]["sigmas"]]
    if missing:
        raise ConfigError(f"cluster.sigmas: {missing} not in phi.sigmas {config['phi']['sigmas']}")
    check_image_counts(config)
    check_sampling(config)
    check_cluster_samples(config)
    if config["train"].get("epochs") is None:
        emergence_steps(config, train_images=1)  # the schedule in steps: the steps train keeps are known now


def check_source(source: str, options: dict, key: str, smallest: int) -> None:
    """The options of a source, named by `key` (data.folder; data.mixture.parts[1] for a mixture's part),
    against the files they name and data.min_size (`smallest`)."""
    if source == "folder":
        if not options["path"]:
            raise ConfigError(f"{key}.path: give the directory of images")
        try:  # a mixture's folder is labelled by its part, not by its sub-folders
            inputs.check_folder(options["path"], f"{key}.path", labelled=key == "data.folder")
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if source == "imagenet64":
        if not options["paths"]:
            raise ConfigError(f"{key}.paths: list the npz batch files")
        missing = [p for p in options["paths"] if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"{key}.paths: not found: {missing}")
    if source == "mnist5k" and smallest > MNIST5K_SIDE:
        part = "" if key == "data.mnist5k" else f" of {key}"
        raise ConfigError(f"data.min_size: mnist5k's digits{part} are {MNIST5K_SIDE}×{MNIST5K_SIDE}, below min_size "
                          f"{smallest} (null: data.size): give min_size ≤ {MNIST5K_SIDE} to upsample them")
    if source == "patches":
        check_patches(options, smallest, key)
    if source == "mixture":
        check_mixture(options.get("parts"), smallest)


def check_patches(options: dict, smallest: int, key: str) -> None:
    """Crop sides in order, not all below min_size (those crops are skipped), of bundled photographs."""
    if options["crop_min"] > options["crop_max"]:
        raise ConfigError(f"{key}.crop_min: must be ≤ crop_max")
    if options["crop_max"] < smallest:
        raise ConfigError(f"{key}.crop_max: {options['crop_max']} is below data.min_size {smallest} "
                          "(null: data.size): every crop would be skipped")
    if options["images"]:
        known = inputs.PHOTOGRAPHS
        unknown = [name for name in options["images"] if name not in known]
        if unknown:
            raise ConfigError(f"{key}.images: unknown {unknown[0]!r}{suggestion(unknown[0], known)}; "
                              f"bundled: {', '.join(known)}")


def check_mixture(parts: list[dict] | None, smallest: int) -> None:
    """Parts given (the schema counts them), each checked as its source is, under names of their own."""
    if not parts:
        raise ConfigError("data.mixture.parts: list the parts (at least 2), each {name, source, its options}")
    names = [part["name"] for part in parts]
    for index, part in enumerate(parts):
        if part["name"] in names[:index]:
            raise ConfigError(f"data.mixture.parts[{index}].name: {part['name']!r} is the name of "
                              f"parts[{names.index(part['name'])}] too: a part's name is its label, give each its own")
        check_source(part["source"], part, f"data.mixture.parts[{index}]", smallest)



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


def check_cluster_samples(config: dict) -> None:
    """Refuse clusters to sample that k-means does not make, or whose centroids are no φ."""
    clusters, cluster = config["sample"]["clusters"], config["cluster"]
    if clusters["k"] is not None and clusters["k"] not in cluster["ks"]:
        raise ConfigError(f"sample.clusters.k: {clusters['k']} is not one of cluster.ks {cluster['ks']} (the clusters "
                          "sampled are k-means'; null: the largest of cluster.ks)")
    if clusters["count"] and cluster["normalize"]:
        raise ConfigError("sample.clusters.count: cluster.normalize clusters φ/‖φ‖, whose centroids are no φ a sample "
                          "can match; give 0, or cluster.normalize false")


def check_sampling(config: dict) -> None:
    """Refuse a σ schedule or ascent that does not descend, or a max_steps that would stop an ascent before its
    designed end at sigma_final (config: its `sample` section is enough, as the `semcore sample` command's)."""
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
