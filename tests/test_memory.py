"""The memory model (semcore.plan.resources) against measurements. Each analysis rule's peak RSS is measured
at two sizes, the suite's tiny run (240 images) and a run of 3,000 images with a wide φ; the peaks are
fitted as a + b × the bytes the model says the job holds, and the fit, extrapolated to
configs/imagenet64-cluster.yaml, must stay under what the rules declare there.
`pytest -s tests/test_memory.py` prints the table (docs/cluster.md, "Memory")."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from snakemake.utils import validate

from semcore.plan import resources
from semcore.plan.schema import SCHEMA

from conftest import REPO, TINY_CONFIG, snakemake, write_config

# Loaded by every Python process of the large run (PYTHONPATH): a workflow script writes, at exit, its
# job, its declared memory and its peak RSS (the kernel's high-water mark, exact where Snakemake's
# benchmark samples every 0.5 s).
SITECUSTOMIZE = """
import atexit, json, os, resource, sys

def _record():
    job = getattr(sys.modules["__main__"], "snakemake", None)
    if job is not None:
        with open(os.environ["SEMCORE_PEAKS"], "a") as f:
            f.write(json.dumps(dict(rule=job.rule, features=job.wildcards.get("features", "phi"),
                                    k=int(job.wildcards.get("k", 0)), declared_mb=job.resources.mem_mb,
                                    peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)) + "\\n")

atexit.register(_record)
"""

# `factors` is left out: scikit-learn's kNN mutual information takes minutes at the large size, and it
# runs on the synthetic scenes only.
TARGETS = ["sparsity", "stability", "block_semantics", "selectivity", "subspaces", "neighbours", "semantic_scores"]
RULES = ["block_means", "sparsity", "stability", "block_semantics", "selectivity", "subspaces", "kmeans",
         "neighbours", "probe", "semantic_scores"]
CLASSES = 20  # the tiny run's (background, foreground) pairs; as many folders in the large run
LARGE_IMAGES = 3000

# Peaks of identical runs differ by up to ~10 MB (semantic_scores: 423 and 435 MB): a rule whose data
# grows by less than twice that between the runs has no measurable slope, and is taken to hold its
# bytes once.
NOISE_MB = 10

# configs/imagenet64-cluster.yaml: every image of the downsampled-ImageNet npz batches, 1,000 classes.
IMAGENET_IMAGES, IMAGENET_CLASSES = 1_281_167, 1000


def write_images(folder, n: int) -> None:
    """n 32×32 images in 20 class folders: a colour per class, and noise."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (CLASSES, 3))
    for i in range(n):
        label = i % CLASSES
        pixels = np.clip(colours[label] + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
        (folder / f"class{label:02d}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"class{label:02d}" / f"{i:05d}.png")


def large_config(folder) -> dict:
    """3,000 images from a folder, as ImageNet's manifest rows (a path, a label, no scene factors), and a
    2,048-channel φ (8 KB an image, 4× ImageNet's), so that each image's data is large beside its per-image
    overheads and every rule's data MBs to tens of MB; the block-means images and φ's batch grow too."""
    config = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    config.update(name="memory", device="cpu")
    config["data"] = {"source": "folder", "folder": {"path": str(folder)}, "size": 32, "channels": 3,
                      "test_fraction": 0.25, "samples_per_shard": LARGE_IMAGES}
    config["model"] = {"channels": [8, 16, 32, 2048], "enc_convs": 1, "mid_convs": 1, "dec_convs": [2, 1, 1]}
    config["train"].update(steps=2, eval_every=2, checkpoint_every=2, log_every=1, eval_images=8)
    config["emergence"] = {"steps": []}
    config["phi"] = {"sigmas": [0.1, 0.5], "n_noise": 1, "batch_images": 128}
    config["stats"].update(sigma=0.1, block_means_images=600, min_group_size=50)
    config["cluster"].update(n_init=1, probe_max_iter=20)
    return config


def validated(config: dict) -> dict:
    config = yaml.safe_load(yaml.safe_dump(config))
    validate(config, str(SCHEMA))  # fills in the defaults, as the workflow does
    return config


def with_model(jobs: pd.DataFrame, config: dict, n_images: int) -> pd.DataFrame:
    """The jobs with the model's bytes held (MB) and memory (MB) at this config."""
    config = validated(config)
    args = [(r.rule, config, n_images, r.features, CLASSES, r.k) for r in jobs.itertuples()]
    return jobs.assign(images=n_images, held_mb=[resources.held_bytes(*a) / resources.MB for a in args],
                       model_mb=[resources.mem_mb(*a) for a in args])


def tiny_peaks(workdir) -> pd.DataFrame:
    """The tiny run's jobs (rule, features, k, peak_mb) from their benchmark files: max_rss, sampled every
    0.5 s, within 1 MB of the exact peaks at this size (measured)."""
    jobs = []
    for path in sorted((workdir / "results" / "tiny" / "benchmarks").rglob("*.tsv")):
        rule = path.parent.name if path.parent.name in ("kmeans", "probe") else path.stem
        if rule in RULES:
            features, _, k = path.stem.rpartition("-k") if rule == "kmeans" else (path.stem, "", "0")
            jobs.append(dict(rule=rule, features=features if rule in ("kmeans", "probe") else "phi", k=int(k),
                             peak_mb=pd.read_csv(path, sep="\t").max_rss.max()))
    return with_model(pd.DataFrame(jobs), TINY_CONFIG, TINY_CONFIG["data"]["synthetic"]["n_images"])


@pytest.fixture(scope="module")
def large_peaks(tmp_path_factory) -> pd.DataFrame:
    """The large run's analysis jobs: rule, features, declared_mb (what the job was given), peak_mb."""
    site, workdir = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("memory")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    write_images(workdir / "images", LARGE_IMAGES)
    config = large_config(workdir / "images")
    write_config(workdir, config)
    records = workdir / "peaks.jsonl"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", str(site))
        env.setenv("SEMCORE_PEAKS", str(records))
        snakemake(workdir, *TARGETS, "--cores", "4")  # jobs are mostly start-up: two at a time on 2 CPUs
    jobs = pd.DataFrame([json.loads(line) for line in records.read_text().splitlines()])
    return with_model(jobs[jobs.rule.isin(RULES)], config, LARGE_IMAGES)


def imagenet_table(peaks: pd.DataFrame) -> pd.DataFrame:
    """Per rule (and feature set): the fit of its peaks (copies: MB per MB held), the bytes held at the
    ImageNet config, the need extrapolated there, and the declared memory."""
    config = validated(yaml.safe_load((REPO / "configs" / "imagenet64-cluster.yaml").read_text()))
    rows = []
    for rule in RULES:
        measured = peaks[peaks.rule == rule]
        slope, intercept = 1, (measured.peak_mb - measured.held_mb).max()
        if measured.held_mb.max() - measured.held_mb.min() > 2 * NOISE_MB:
            slope, intercept = np.polyfit(measured.held_mb, measured.peak_mb, 1)
        for features in sorted(set(measured.features)):
            for k in config["cluster"]["ks"] if rule == "kmeans" else [0]:
                args = (rule, config, IMAGENET_IMAGES, features, IMAGENET_CLASSES, k)
                held = resources.held_bytes(*args) / resources.MB
                rows.append(dict(rule=rule, features=features.split("-")[0] if rule in ("kmeans", "probe") else "",
                                 k=k or "", measured_mb=measured.peak_mb.max(), copies=slope, held_mb=held,
                                 need_mb=intercept + max(slope, 0) * held, declared_mb=resources.mem_mb(*args)))
    return pd.DataFrame(rows)


def test_the_rules_declare_the_memory_model(large_peaks):
    assert set(large_peaks.rule) == set(RULES) and len(large_peaks) == len(RULES) + 4  # kmeans, probe: 3 jobs each
    assert (large_peaks.declared_mb == large_peaks.model_mb).all()


def test_declared_memory_covers_the_measured_and_the_extrapolated_need(finished_run, large_peaks):
    peaks = pd.concat([tiny_peaks(finished_run), large_peaks], ignore_index=True)
    over = peaks[peaks.peak_mb > peaks.model_mb]
    assert over.empty, f"jobs above their declared memory:\n{over.to_string()}"
    table = imagenet_table(peaks)
    tightest = table.loc[(table.declared_mb - table.need_mb).groupby([table.rule, table.features], sort=False).idxmin()]
    print("\nconfigs/imagenet64-cluster.yaml, MB (copies: measured MB per MB held; kmeans: its tightest k)\n"
          + tightest.to_string(index=False, float_format=lambda v: f"{v:,.2f}" if abs(v) < 10 else f"{v:,.0f}"))
    short = table[table.need_mb > table.declared_mb]
    assert short.empty, f"declared below the extrapolated need:\n{short.to_string()}"
