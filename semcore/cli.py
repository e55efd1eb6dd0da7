"""The `semcore` command: a trained denoiser and its φ outside the workflow.

    semcore info MODEL                          architecture, parameters, receptive fields, training summary
    semcore phi MODEL IMAGES... --sigma S -o OUT.parquet
    semcore neighbours PHI IMAGE -k 5           nearest neighbours in φ space, with their files and labels
    semcore explore results/<name>              the φ explorer page, built with Snakemake if missing, opened
    semcore sample MODEL --target IMAGE -o grid.png
    semcore import-authors FOLDER -o model.pt

Each subcommand is also a plain function: `info`, `phi_of_images` (+ `write_phi_table`), `neighbours`, `explore`,
`sample`, `import_authors`. They turn what a user names (files, folders, settings) into the arguments of the functions the
workflow's scripts call, and call them: semcore.phi.phi_of_images (φ of given images), semcore.cluster.
nearest_in_chunks (the nearest-φ search, one φ file at a time), semcore.sample.sample_images and score (self-guided
samples and their φ error). MODEL is a model.pt this package wrote or the authors' folder (or their model.pt).
Images are read and conformed as the workflow's folder source does (semcore.sources). Mistakes a user can make
raise CommandError, which the command prints as one line.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import webbrowser
from dataclasses import asdict
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
import yaml

from semcore import authors, phi, sources
from semcore.cluster import nearest_in_chunks
from semcore.figures import grid as tiled
from semcore.files import atomic
from semcore.images import png_bytes
from semcore.model import UNetFlex, receptive_fields
from semcore.phi import write_phi_table
from semcore.plan.checks import check_sampling
from semcore.plan.sampler import resolved_ascent, sampler_final_sigma
from semcore.plan.schema import ConfigError, error_lines, load_schema, section_defaults
from semcore.runtime import Precision, resolve_device
from semcore.sample import GREY, sample_images, score, start_image
from semcore.shards import INDEX, CorruptShard, first_images, shard_paths
from semcore.tables import as_uint8
from semcore.train import read_log

# The split written for images given to `semcore phi`: they are neither of the workflow's train and test.
SPLIT = "external"
# A sample grid's images are enlarged to about this many pixels (nearest neighbour), so 16 px ones are visible.
GRID_PIXELS = 128
SCHEMA_DEFAULTS = "the schema's defaults (semcore/config.schema.yaml; for the fixed sampler, the paper's)"


class CommandError(ValueError):
    """A mistake in what the user asked for (a missing file, an unknown key, a σ not computed), in one line."""


# --- models and runs -------------------------------------------------------------------------------------------

def load_model(path):
    """(UNetFlex in eval mode, its format: "semcore" or "authors") of a model.pt this package wrote, or of the
    authors' folder or model.pt."""
    path = Path(path)
    if not path.exists():
        raise CommandError(f"{path}: no such file or folder")
    try:
        if path.is_file():
            try:
                return UNetFlex.from_pretrained(path).eval(), "semcore"
            except KeyError:  # a bare state_dict, without this package's "config": the authors' format
                pass
        return authors.load(path), "authors"
    except Exception as error:  # whatever torch.load or the checks make of a file that is no model
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CommandError(f"{path}: not a model this package or the authors wrote ({reason})") from None


def _model_and_metadata(model):
    """(UNetFlex, the metadata a φ table records of it): a path is loaded; a UNetFlex is used as it is."""
    if not isinstance(model, (str, Path)):
        return model.eval(), {"model": "in memory"}
    network, _ = load_model(model)
    weights = Path(model) / "model.pt" if Path(model).is_dir() else Path(model)
    return network, {"model": str(Path(model).resolve()),
                     "checkpoint_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}


def run_folder(path) -> Path | None:
    """The workflow run (results/<name>) that `path` (a model, a φ file or directory) lies in: the folder
    holding shards/ with its index, up to three folders above; None outside a run."""
    if not isinstance(path, (str, Path)):
        return None
    for folder in [Path(path).resolve(), *Path(path).resolve().parents][:4]:
        if (folder / "shards" / INDEX).is_file():
            return folder
    return None


def _merged(base: dict, changes: dict) -> dict:
    """`changes` over `base`, nested dicts key by key."""
    return base | {key: _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict)
                   else value for key, value in changes.items()}


def run_config(run: Path) -> tuple[dict, Path] | None:
    """(the config a workflow run was made with, its file: results/<name>/config.yaml, which the rule
    run_config writes); None when the run has none."""
    path = run / "config.yaml"
    if not path.is_file():
        return None
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise CommandError(f"{path}: not a config (a mapping of settings)")
    return config, path


# --- info ------------------------------------------------------------------------------------------------------

def info(model) -> dict:
    """What a model is: its path, format, architecture, parameter count, receptive field of each block (px) and,
    when a training log.jsonl lies beside it, a summary of the training (None otherwise)."""
    network, kind = load_model(model)
    path = Path(model)
    run_dir = path if path.is_dir() else path.parent
    return {"path": str(path), "format": kind, "config": asdict(network.config),
            "parameters": sum(p.numel() for p in network.parameters()),
            "receptive_fields": receptive_fields(network.config),
            "training": _training_summary(run_dir) if (run_dir / "log.jsonl").is_file() else None}


def _training_summary(run_dir: Path) -> dict:
    """steps, final loss, test PSNR {σ: (noisy, denoised)} at the last evaluation, median img/s, resumes."""
    try:
        log = read_log(run_dir)
    except ValueError as error:
        raise CommandError(f"{run_dir / 'log.jsonl'}: not a training log ({error})") from None
    kinds = log.get("kind", pd.Series(dtype=object))
    train, evals = log[kinds == "train"], log[kinds == "eval"]
    last = evals[evals.step == evals.step.max()] if len(evals) else evals
    return {"steps": int(train.step.max()) if len(train) else 0,
            "final_loss": float(train.loss.iloc[-1]) if len(train) else None,
            "psnr_step": int(last.step.iloc[0]) if len(last) else None,
            "psnr": {float(r.sigma): (float(r.psnr_noisy), float(r.psnr_denoised)) for r in last.itertuples()},
            "img_per_s": float(train.img_per_s.median()) if len(train) else None,
            "resumes": int((kinds == "resume").sum()), "imported": bool((kinds == "import").any())}


def import_authors(folder, out) -> Path:
    """The authors' trained denoiser (their folder or model.pt) saved as this package's model.pt at `out`."""
    network, kind = load_model(folder)
    if kind != "authors":
        raise CommandError(f"{folder}: a model.pt this package wrote already, not the authors'")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    network.save_pretrained(out)  # atomic (semcore.files)
    return out


# --- images ----------------------------------------------------------------------------------------------------

def read_images(paths, size: int | None, channels: int, levels: int) -> tuple[list[dict], list[tuple[str, str]]]:
    """The image files and folders (recursively) as the workflow's folder source reads them, conformed:
    centre-cropped and resized to size×size (size None: each image's shorter side, down to a multiple of
    2^levels, the UNet's poolings). Returns ({key, label, label_name, pixels uint8 H×W×C} per image, in the
    order given, folders sorted; [(path, why it was skipped)] for what cannot be used, as the folder source
    skips it, and for a file given twice)."""
    step = 2**levels
    if size is not None and (size < step or size % step):
        raise CommandError(f"--size {size}: must be a positive multiple of {step} (the UNet pools {levels} times)")
    items = []
    for given in map(Path, paths):
        if not given.exists():
            raise CommandError(f"{given}: no such file or folder")
        items += list(sources.folder(given))
    images, skipped, seen = [], [], set()
    for item in items:
        if item.error is None and item.origin in seen:
            item.error = "given twice"
        seen.add(item.origin)
        if item.error is None:
            side = size or min(item.image.size) // step * step
            try:
                pixels, _ = sources.conform(item.image, side, channels, min_size=max(side, step))
            except sources.UnusableImage as error:
                item.error = str(error)
        if item.error is None:
            images.append(dict(key=item.origin, label_name=item.label_name, pixels=pixels))
        else:
            skipped.append((item.origin, item.error))
    names = sorted({image["label_name"] for image in images} - {""})
    for image in images:
        image["label"] = names.index(image["label_name"]) if image["label_name"] else -1
    return images, skipped


def _one_image(path, size: int | None, channels: int, levels: int):
    """The pixels (uint8 H×W×C) of one image file, or CommandError saying why it cannot be used."""
    if Path(path).is_dir():
        raise CommandError(f"{path}: a folder, not an image file")
    images, skipped = read_images([path], size, channels, levels)
    if skipped:
        raise CommandError(f"{skipped[0][0]}: {skipped[0][1]}")
    return images[0]["pixels"]


# --- φ ---------------------------------------------------------------------------------------------------------

def phi_of_images(model, images, sigmas, n_noise: int | None = None, seed: int | None = None,
                  size: int | None = None, device: str = "auto"):
    """φ(x_σ) = E_z[ā_mid(x + σz)] of image files and folders (recursively) at each σ, as a table with the
    workflow's φ columns: key (the file's path), split ("external"), label (the file's first sub-folder under
    the folder given, indexed in sorted order over all inputs; -1 for files given alone or at a folder's top),
    sigma, phi (float32 [C]); rows sorted by σ, then in input order. Unusable files are skipped with a
    printed reason, as the folder source skips them. n_noise and seed default to the workflow's (phi.*).

    The noise of each image and σ is seeded by (seed, its pixels, σ) (semcore.phi.phi_of_images): an image's φ
    does not depend on the other images or σ asked for. table.attrs["metadata"] is what `write_phi_table`
    records: the model, its sha256, n_noise, seed, size, label names, the arithmetic."""
    workflow = section_defaults("phi")
    n_noise = workflow["n_noise"] if n_noise is None else n_noise
    seed = workflow["seed"] if seed is None else seed
    if n_noise < 1:
        raise CommandError(f"--n-noise {n_noise}: must be ≥ 1")
    if not sigmas or min(sigmas) < 0:
        raise CommandError(f"--sigma {list(sigmas)}: give one or more σ ≥ 0")
    network, metadata = _model_and_metadata(model)
    device = resolve_device(device)
    network.to(device)
    found, skipped = read_images(images, size, network.config.in_channels, network.config.num_blocks)
    for origin, reason in skipped:
        print(f"skipped {origin}: {reason}", file=sys.stderr)
    if not found:
        raise CommandError(f"none of the {len(skipped)} inputs in {' '.join(map(str, images))} could be used")
    order = sorted(set(sigmas))
    try:
        vectors = phi.phi_of_images(network, found, order, n_noise, seed, device, phi.describe_model(metadata))
    except phi.NotFiniteError as error:
        raise CommandError(str(error)) from None
    table = pd.DataFrame([dict(key=image["key"], split=SPLIT, label=image["label"], sigma=sigma, phi=vector)
                          for sigma in order for image, vector in zip(found, vectors[sigma])])
    table["label"] = table["label"].astype(np.int32)
    table.attrs["metadata"] = metadata | dict(
        block="M", n_noise=n_noise, seed=seed, size=size or "own",
        label_names=",".join(sorted({image["label_name"] for image in found} - {""}))) | Precision().describe(device)
    return table


# --- neighbours ------------------------------------------------------------------------------------------------

def _phi_files(phi_dir) -> list[Path]:
    """The φ files of a workflow φ directory, or the one file given; each checked to be a φ table."""
    path = Path(phi_dir)
    if not path.exists():
        raise CommandError(f"{path}: no such file or folder")
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise CommandError(f"{path}: holds no .parquet files (a φ directory is results/<name>/phi)")
    for file in files:
        try:
            names = pq.read_schema(file).names
        except Exception as error:  # whatever pyarrow makes of a file that is no Parquet
            raise CommandError(f"{file}: not a Parquet file ({error})") from None
        if not {"key", "sigma", "phi"} <= set(names):
            raise CommandError(f"{file}: not a φ table (columns {names}; a φ table has key, sigma, phi)")
    return files


def _chosen_sigma(phi_dir, sigma: float | None, present: list[float]) -> float:
    """The σ asked for, checked to be in the table, or the smallest σ > 0 there."""
    if sigma is None:
        positive = [s for s in present if s > 0]
        if not positive:
            raise CommandError(f"{phi_dir}: no σ > 0 (σ present: {present}); give --sigma")
        return positive[0]
    if sigma not in present:
        raise CommandError(f"--sigma {sigma}: not in {phi_dir} (σ present: {present})")
    return sigma


def _phi_of_file(phi_dir, files: list[Path], image, sigma: float, model, size: int | None, device: str):
    """φ [C] of an image file as the φ table's was computed: with the model its metadata names (or `model`), its
    n_noise and seed, at `size` (or the size `semcore phi` recorded, or the run's image size, or its own)."""
    metadata = phi.stored_metadata(files[0])
    if model is None:
        named = metadata.get("model")
        # the workflow records it relative to its working directory, which holds results/<name>/phi: looked for
        # from the φ directory up first, then from here
        places = [*(folder / named for folder in Path(phi_dir).resolve().parents), Path(named)] if named else []
        model = next((place for place in places if place.exists()), None)
        if model is None:
            raise CommandError(f"{files[0]}: the model its metadata names ({named}) is not found from here; "
                               "give --model")
    run = run_folder(phi_dir)
    if size is None and metadata.get("size", "own") != "own":
        size = int(metadata["size"])
    elif size is None and run is not None:
        size = first_images(run / "shards", "test", 1).shape[-1]
    table = phi_of_images(model, [image], [sigma], n_noise=int(metadata.get("n_noise", 1)),
                          seed=int(metadata.get("seed", 0)), size=size, device=device)
    return table.phi.iloc[0]


def _phi_rows(files: list[Path], sigma: float, channels: int):
    """semcore.phi.phi_chunks of the files, each checked to hold φ of `channels` channels."""
    for file in files:
        for meta, rows in phi.phi_chunks([file], sigma):
            if rows.shape[1] != channels:
                raise CommandError(f"{file}: φ has {rows.shape[1]} channels, the query's {channels} (another model)")
            yield meta, rows


def neighbours(phi_dir, image, k: int = 5, sigma: float | None = None, model=None, size: int | None = None,
               device: str = "auto"):
    """The k nearest rows of a φ table to `image` in φ space at σ: rank (0 first), key, label, distance.

    phi_dir: a workflow φ directory (results/<name>/phi) or a file of `semcore phi`. image: a key of the table,
    or an image file, whose φ is then computed with `model` (default: the model the table's metadata names),
    its n_noise and seed, at `size` (default: the size `semcore phi` recorded, or the run's image size when
    the table lies in a workflow run, or the image's own). σ defaults to the smallest σ > 0 of the table. An
    image in the table is its own nearest neighbour, at distance 0. Reads one φ file at a time
    (semcore.cluster.nearest_in_chunks, the workflow's search)."""
    if k < 1:
        raise CommandError(f"-k {k}: must be ≥ 1")
    files = _phi_files(phi_dir)
    sigmas_of = {file: phi.stored_sigmas(file) for file in files}
    sigma = _chosen_sigma(phi_dir, sigma, sorted(set().union(*sigmas_of.values())))
    files = [file for file in files if sigma in sigmas_of[file]]
    query = phi.stored_phi(files, sigma, str(image))
    if query is None and not Path(image).is_file():
        raise CommandError(f"{image}: neither a key of {phi_dir} at σ {sigma:g} nor an image file")
    if query is None:
        query = _phi_of_file(phi_dir, files, image, sigma, model, size, device)
    found = nearest_in_chunks(query[None], _phi_rows(files, sigma, len(query)), k)
    table = found.assign(**_files_and_label_names(phi_dir, files, found))
    table = table[["rank", "key", "file", "label", "label_name", "distance"]]
    table.attrs["sigma"] = sigma
    return table


def _files_and_label_names(phi_dir, files: list[Path], found: pd.DataFrame) -> dict:
    """Each neighbour's image file and label name: from the run's manifest when the φ lies in a workflow run;
    else the key is the file (`semcore phi` keys images by path) and the label names are the table's
    metadata ("" where there are none)."""
    run = run_folder(phi_dir)
    if run is not None and (run / "manifest.parquet").is_file():
        rows = pd.read_parquet(run / "manifest.parquet", columns=["key", "origin", "label_name"])
        rows = rows.drop_duplicates("key").set_index("key").reindex(found.key).fillna("")
        return {"file": rows.origin.to_numpy(), "label_name": rows.label_name.to_numpy()}
    names = [name for name in phi.stored_metadata(files[0]).get("label_names", "").split(",") if name]
    return {"file": [key if Path(key).is_file() else "" for key in found.key],
            "label_name": [names[label] if 0 <= label < len(names) else "" for label in found.label]}


# --- explorer --------------------------------------------------------------------------------------------------

def explore(run, cores: str = "all") -> Path:
    """The φ explorer page of a workflow run (results/<name>/explorer.html), built when missing: Snakemake makes
    that target with the run's config (results/<name>/config.yaml), in the folder that holds results/, with
    the workflow found there (Snakefile or workflow/Snakefile, as Snakemake looks) or else this checkout's.
    A study's page (results/<study>/explorer.html) is found, not built: the study's file builds it."""
    run = Path(run)
    page = run / "explorer.html"
    if page.is_file():
        return page
    config = run / "config.yaml"
    if not config.is_file():
        raise CommandError(f"{run}: no explorer.html and no config.yaml to build it with (not a workflow run; "
                           f"a study's page is built by `snakemake --configfile <study.yaml>`)")
    name = yaml.safe_load(config.read_text()).get("name")
    workdir = run.resolve().parent.parent
    if run.resolve() != workdir / "results" / str(name):
        raise CommandError(f"{config}: its name is {name!r}, but the run is {run} (expected results/{name})")
    command = [sys.executable, "-m", "snakemake", "--cores", cores, "--configfile", str(config.resolve())]
    if not any((workdir / path).is_file() for path in ("Snakefile", "snakefile", "workflow/Snakefile")):
        command += ["--snakefile", str(Path(__file__).resolve().parents[1] / "Snakefile")]
    print(f"building {page} with Snakemake in {workdir}", file=sys.stderr)
    if subprocess.run([*command, "--", f"results/{name}/explorer.html"], cwd=workdir).returncode != 0:
        raise CommandError(f"snakemake could not build {page} (its messages are above)")
    return page


# --- self-guided sampling --------------------------------------------------------------------------------------

def sampler_settings(model=None, overrides: dict | None = None) -> tuple[dict, str]:
    """(the sample.* settings, where they come from): the sample section of the config of the workflow run
    that `model` lies in (run_config), else the schema's defaults; `overrides` merged in (nested:
    {"schedule": {"steps": 20}}); checked as the workflow checks them."""
    run = run_folder(model)
    found = run_config(run) if run is not None else None
    settings = _merged(section_defaults("sample"), (found[0].get("sample") or {}) if found else {})
    settings = _merged(settings, overrides or {})
    schema = load_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    # the config's other sections are absent here: only errors inside sample count
    lines = [line for error in validator.iter_errors({"sample": settings})
             if list(error.absolute_path)[:1] == ["sample"] for line in error_lines(error)]
    if lines:
        raise CommandError("; ".join(lines))
    try:
        check_sampling({"sample": settings})
    except ConfigError as error:
        raise CommandError(str(error)) from None
    source = f"the run's config {found[1]} (name {run.name})" if found else SCHEMA_DEFAULTS
    return settings, source


def _start(kind: str, shards, size: int | None) -> tuple[torch.Tensor | None, int | None]:
    """(the start image [C, H, W] made from the training shards, or None for grey without shards; the size
    the target is conformed to: the shards')."""
    if shards is None:
        if kind != "grey":
            raise CommandError(f"start {kind} is made from the training images: give --shards (a workflow run's "
                               "shards/), or --set start=grey")
        return None, size
    try:
        start = start_image(shard_paths(shards, "train"), kind)
    except (FileNotFoundError, CorruptShard) as error:
        raise CommandError(f"--shards {shards}: {error}") from None
    if size is not None and size != start.shape[-1]:
        raise CommandError(f"--size {size}: the images of {shards} are {start.shape[-1]} px")
    return start, start.shape[-1]


def _write_grid(path, images: list[np.ndarray]) -> None:
    """Images (uint8 H×W×C) in a row, enlarged, to a PNG, atomically."""
    canvas = tiled([images], scale=max(1, GRID_PIXELS // images[0].shape[0]))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic(path) as tmp:
        tmp.write_bytes(png_bytes(canvas))


def sample(model, target, n: int = 8, *, algorithm: str | None = None, seed: int | None = None,
           settings: dict | None = None, shards=None, size: int | None = None, device: str = "auto", grid=None):
    """n self-guided samples of one target image, with the workflow's sampler (semcore.sample.sample_images) and
    settings (sampler_settings: those of the model's run, or the schema's; algorithm, seed and `settings`
    override them). Returns (uint8 images [n, H, W, C], the relative φ error of each at the sampler's final σ,
    as the workflow scores it: semcore.sample.score). With `grid`, writes a PNG there: the target, then the
    samples, enlarged.

    The start image (sample.start) is made from the training images of `shards` (default: the shards of the
    workflow run the model lies in); start "grey" needs none. The target is conformed to `size` (default: the
    shards' image size, or its own)."""
    if n < 1:
        raise CommandError(f"-n {n}: must be ≥ 1")
    chosen = {key: value for key, value in (("algorithm", algorithm), ("seed", seed)) if value is not None}
    options, _ = sampler_settings(model, (settings or {}) | chosen)
    network, _ = _model_and_metadata(model)
    device = resolve_device(device)
    network.to(device)
    run = run_folder(model)
    start, size = _start(options["start"], shards or (run / "shards" if run is not None else None), size)
    pixels = _one_image(target, size, network.config.in_channels, network.config.num_blocks)
    conditioner = torch.tensor(pixels).permute(2, 0, 1)[None]  # copied: PIL's arrays are read-only
    start = torch.full(conditioner.shape[1:], GREY) if start is None else start
    generator = phi.seeded_generator(options["seed"], "self-guided", device)
    goal, rows, samples = sample_images(
        network, conditioner, n, start, n_noise=options["n_noise"], top_k=options["top_k"], generator=generator,
        guided=True, algorithm=options["algorithm"], schedule=options["schedule"],
        ascent_options=resolved_ascent(options["ascent"]), matching=options["matching"])
    scores = score(network, samples, goal, rows, sigma=sampler_final_sigma(options), generator=generator)
    images = as_uint8(samples.images)
    if grid is not None:
        _write_grid(grid, [pixels, *images])
    return images, scores.phi_error.to_numpy()


# --- the command -----------------------------------------------------------------------------------------------

def _format_info(summary: dict) -> str:
    config = summary["config"]
    lines = [f"model: {summary['path']} ({summary['format']} format)",
             "architecture: " + ", ".join(f"{key} {value}" for key, value in config.items()),
             f"parameters: {summary['parameters']:,}",
             "receptive fields (px): " + ", ".join(f"{name} {px}" for name, px in summary["receptive_fields"].items())]
    training = summary["training"]
    if training is None:
        return "\n".join(lines + ["training: no log.jsonl beside the model"])
    if training["imported"]:
        lines.append("training: imported by the workflow (model.pretrained), not trained here")
    else:
        speed = f"{training['img_per_s']:.0f} img/s (median)" if training["img_per_s"] is not None else "no img/s"
        loss = f"{training['final_loss']:.4g}" if training["final_loss"] is not None else "none"
        lines.append(f"training: {training['steps']:,} steps, final loss {loss}, {speed}, "
                     f"{training['resumes']} resume(s)")
    if training["psnr"]:
        psnr = [f"σ {sigma:g}: {noisy:.2f} → {clean:.2f} dB" for sigma, (noisy, clean) in training["psnr"].items()]
        lines.append(f"test PSNR at step {training['psnr_step']:,}: " + "; ".join(psnr))
    return "\n".join(lines)


def _run_info(args) -> None:
    print(_format_info(info(args.model)))


def _run_phi(args) -> None:
    table = phi_of_images(args.model, args.images, args.sigma, n_noise=args.n_noise, seed=args.seed, size=args.size,
                          device=args.device)
    write_phi_table(table, args.output)
    print(f"wrote {args.output}: {table.key.nunique()} images × {table.sigma.nunique()} σ, "
          f"{len(table.phi.iloc[0])} channels")


def _run_neighbours(args) -> None:
    table = neighbours(args.phi, args.image, k=args.k, sigma=args.sigma, model=args.model, size=args.size,
                       device=args.device)
    print(f"σ {table.attrs['sigma']:g}")
    print(table.to_string(index=False))


def _run_explore(args) -> None:
    page = explore(args.folder, cores=args.cores)
    print(page)
    if not args.no_open and not webbrowser.open(page.resolve().as_uri()):
        print("no browser to open it here: open the file in one (it needs no network)", file=sys.stderr)


def _settings(pairs: list[str]) -> dict:
    """--set KEY=VALUE pairs (dotted keys, YAML values) as a nested dict."""
    settings = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise CommandError(f"--set {pair}: write KEY=VALUE, e.g. schedule.steps=20")
        *sections, name = key.split(".")
        node = settings
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = yaml.safe_load(value)
    return settings


def _run_sample(args) -> None:
    chosen = {key: value for key, value in (("algorithm", args.algorithm), ("seed", args.seed)) if value is not None}
    options, source = sampler_settings(args.model, _settings(args.set) | chosen)
    changed = [*(f"--{key} {value}" for key, value in chosen.items()), *(f"--set {pair}" for pair in args.set)]
    steps = "schedule" if options["algorithm"] == "fixed" else "ascent"
    shown = [f"{key} {options[key]}" for key in ("algorithm", "start", "n_noise", "top_k", "seed", steps, "matching")]
    print(f"settings ({source}{', changed by ' + ' '.join(changed) if changed else ''}): " + ", ".join(shown))
    images, errors = sample(args.model, args.target, args.n, settings=options, shards=args.shards, size=args.size,
                            device=args.device, grid=args.output)
    print(f"wrote {args.output}: the target and {len(images)} samples of {images.shape[1]}×{images.shape[2]} px")
    for i, error in enumerate(errors):
        print(f"sample {i}: relative φ error {error:.4f}")


def _run_import(args) -> None:
    out = import_authors(args.folder, args.output)
    print(f"wrote {out}")
    print(_format_info(info(out)))


# --- the parser, a function per subcommand ---------------------------------------------------------------------

FORMATTER = argparse.RawDescriptionHelpFormatter


def _command(commands, name: str, run, summary: str, description: str, example: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=summary, description=description, epilog=f"example:\n  {example}",
                              formatter_class=FORMATTER)
    sub.set_defaults(run=run)
    return sub


def _model_argument(sub) -> None:
    sub.add_argument("model", metavar="MODEL", help="a model.pt this package wrote, or the authors' folder "
                                                      "(model.pt, exp_arguments.pkl) or their model.pt")


def _device_option(sub) -> None:
    sub.add_argument("--device", default="auto", metavar="DEVICE",
                     help="auto (CUDA when available, else the CPU), cpu, cuda:1…")


def _size_option(sub, default: str) -> None:
    sub.add_argument("--size", type=int, metavar="N",
                     help=f"centre-crop and resize images to N×N, as the workflow's data.size (default: {default})")


def _add_info(commands) -> None:
    sub = _command(commands, "info", _run_info, "architecture, parameters, receptive fields, training summary",
                   "Print a model's architecture, parameter count and the receptive field of every block; with a\n"
                   "training log.jsonl beside it, the steps, final loss, last test PSNR at each σ, img/s, resumes.",
                   "semcore info results/demo/model/model.pt")
    _model_argument(sub)


def _add_phi(commands) -> None:
    sub = _command(commands, "phi", _run_phi, "φ of image files and folders, to Parquet",
                   "φ(x_σ) = E_z[ā_mid(x + σz)] of image files and folders (read recursively, as the workflow's\n"
                   "folder source reads them; unusable files are skipped with the reason), written as Parquet\n"
                   "with the workflow's φ columns: key = the file's path; split = 'external'; label = the index\n"
                   "of the file's first sub-folder under the folder given, in sorted order of all these names\n"
                   "(-1 for files given alone or at a folder's top; the names are in the schema metadata,\n"
                   "label_names); sigma; phi. semcore.phi.read_phi, pandas and DuckDB read it as the\n"
                   "workflow's φ. The noise is seeded by --seed, the image's pixels and σ.",
                   "semcore phi results/demo/model/model.pt photos/ extra.png --sigma 0.1 --sigma 0.3 -o phi.parquet")
    _model_argument(sub)
    sub.add_argument("images", nargs="+", metavar="IMAGES", help="image files and folders")
    sub.add_argument("--sigma", type=float, action="append", required=True, metavar="S",
                     help="noise level (pixels in [0, 1]); repeat for several")
    sub.add_argument("--n-noise", type=int, metavar="N", help="noise draws averaged (default: the workflow's phi.n_noise)")
    sub.add_argument("--seed", type=int, metavar="N", help="default: the workflow's phi.seed")
    _size_option(sub, "each image's shorter side, down to a multiple of 2^levels")
    sub.add_argument("-o", "--output", required=True, metavar="OUT.parquet")
    _device_option(sub)


def _add_neighbours(commands) -> None:
    sub = _command(commands, "neighbours", _run_neighbours, "nearest neighbours in φ space",
                   "The images nearest to IMAGE in φ space, from a workflow φ directory (results/<name>/phi) or\n"
                   "a file of `semcore phi`: rank (0 first), key, image file, label and its name, distance.\n"
                   "IMAGE is a key of the table or an image file, whose φ is computed with the model the\n"
                   "table's metadata names (or --model), its n_noise and seed. An image in the table is its\n"
                   "own nearest, at distance 0.",
                   "semcore neighbours results/demo/phi file_0123abcd -k 8 --sigma 0.3")
    sub.add_argument("phi", metavar="PHI_DIR", help="a φ directory or file")
    sub.add_argument("image", metavar="IMAGE", help="a key of the φ table, or an image file")
    sub.add_argument("-k", type=int, default=5, help="neighbours listed (default: %(default)s)")
    sub.add_argument("--sigma", type=float, metavar="S",
                     help="the σ of φ compared (default: the smallest σ > 0 in the table)")
    sub.add_argument("--model", help="the model for an image file (default: the one the table's metadata names)")
    _size_option(sub, "the size `semcore phi` recorded, or the run's images', or the image's own")
    _device_option(sub)


def _add_explore(commands) -> None:
    sub = _command(commands, "explore", _run_explore, "the φ explorer page of a run, built if missing, opened",
                   "Open results/<name>/explorer.html in the browser: every clustered image on a map of φ, its\n"
                   "nearest neighbours in φ, pixels and untrained φ, its channels, clusters and samples. When\n"
                   "the page is missing, Snakemake builds it (and what it needs) with the run's config.",
                   "semcore explore results/demo")
    sub.add_argument("folder", metavar="RUN", help="a workflow run's folder, results/<name> (or a study's)")
    sub.add_argument("--cores", default="all", help="Snakemake's --cores when it builds (default: %(default)s)")
    sub.add_argument("--no-open", action="store_true", help="print the page's path only")


def _add_sample(commands) -> None:
    sub = _command(commands, "sample", _run_sample, "self-guided samples of one image",
                   "Draw n images whose φ matches the target's, with the unconditional denoiser alone (the\n"
                   "workflow's `sample` rule, semcore.sample). Settings: for a model of a workflow run\n"
                   "(results/<name>/model/model.pt), the sample section of the config the run was made with\n"
                   "(results/<name>/config.yaml: the demo's adaptive sampler); else the schema's sample.* defaults\n"
                   "(semcore/config.schema.yaml; for the fixed sampler, the paper's). --set, --algorithm and\n"
                   "--seed change them; the settings used, and where they come from, are printed. The start\n"
                   "image (sample.start, e.g. the training images' mean colour) is made from --shards, by\n"
                   "default the shards of the run the model lies in; --set start=grey needs none. Writes a PNG:\n"
                   "the target, then the samples; prints each sample's relative φ error at the sampler's final σ.",
                   "semcore sample results/demo/model/model.pt --target photo.png -n 8 -o grid.png\n"
                   "  semcore sample model.pt --target a.png --set start=grey --set schedule.steps=10 "
                   "--set matching.max_iter=20 -o grid.png")
    _model_argument(sub)
    sub.add_argument("--target", required=True, metavar="IMAGE", help="the conditioning image file")
    sub.add_argument("-n", type=int, default=8, help="samples (default: %(default)s)")
    sub.add_argument("--algorithm", choices=["fixed", "adaptive"], help="default: the run's (or the schema's) "
                                                                         "sample.algorithm")
    sub.add_argument("--seed", type=int, metavar="N", help="default: the run's (or the schema's) sample.seed")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="a sample.* setting, e.g. schedule.steps=20, matching.max_iter=50, n_noise=4, start=grey, "
                          "ascent.h_schedule=true; repeat for several")
    sub.add_argument("--shards", metavar="DIR",
                     help="the training shards for the start image (default: the shards of the model's run)")
    _size_option(sub, "the shards' image size, or the target's own")
    sub.add_argument("-o", "--output", required=True, metavar="grid.png")
    _device_option(sub)


def _add_import(commands) -> None:
    sub = _command(commands, "import-authors", _run_import, "the authors' denoiser to this package's model.pt",
                   "Read the authors' trained UNet_flex (their folder with model.pt and exp_arguments.pkl, or\n"
                   "its model.pt) and save it as this package's model.pt; then print its info.",
                   "semcore import-authors denoisers/UNet_flex/imagenet/0to255_RF_84x84_… -o imagenet.pt")
    sub.add_argument("folder", metavar="FOLDER", help="the authors' folder or model.pt")
    sub.add_argument("-o", "--output", required=True, metavar="model.pt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semcore", formatter_class=FORMATTER,
        description="A trained UNet denoiser and its representation φ(x) = E_z[ā_mid(x + σz)] outside the workflow.",
        epilog="example:\n  semcore info results/demo/model/model.pt\n  semcore neighbours results/demo/phi "
               "photo.png -k 8\n\n`semcore COMMAND --help` tells more.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_info, _add_phi, _add_neighbours, _add_explore, _add_sample, _add_import):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except CommandError as error:
        raise SystemExit(f"semcore {args.command}: {error}") from None


if __name__ == "__main__":
    main()
