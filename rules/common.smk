import functools
import math
import os
from pathlib import Path

import pyarrow.parquet as pq

# The torch-free layer: planning imports nothing that a job computes with.
from semcore.plan import code, inputs, names, resources, sampler, settings, sizes
from semcore.plan.checks import validated

validated(config)  # every schema error a line, the defaults filled in, the keys checked together

# This workflow's folder, also where a study loads it as a module (workflow.basedir is the study's then).
WORKFLOW_DIR = str(Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parent)

# Workflow scripts import semcore from this checkout, also inside --software-deployment-method conda envs.
# (Set here, not read: hence no `envvars:`.)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [WORKFLOW_DIR, os.environ.get("PYTHONPATH")])))

RESULTS = f"results/{config['name']}"
SOURCE = config["data"]["source"]
CLUSTER = config["cluster"]
SAMPLE = config["sample"]
GIST = config["gist"]
FEATURE_SETS = names.feature_set_names(CLUSTER["sigmas"])  # phi-s<σ>, untrained-s<σ>, pixels
EXPLORER = config["explorer"]
EXPLORER_SIGMA = CLUSTER["sigmas"][0]  # the explorer shows the clusters and neighbours at the first σ
EXPLORER_FEATURES = names.feature_set_names([EXPLORER_SIGMA])
UNCONDITIONAL_START, UNCONDITIONAL_ASCENT = sampler.unconditional_sampler(SAMPLE)


# The wildcards of every rule, in one place: a chunk of consecutive shards of a split, a training step, a
# batch of sampling targets, a feature set, a k.
wildcard_constraints:
    chunk=r"(train|test)-\d{6}-\d{6}",
    step=r"\d+",
    batch=r"\d{3}",
    features="|".join(FEATURE_SETS).replace(".", r"\."),
    k=r"\d+",


def source_options():
    """Only the chosen source's options reach `shard`: editing another source's section reruns nothing."""
    return config["data"][SOURCE]


def source_files(wildcards):
    """Inputs on disk are declared, so adding, removing or touching one reruns `shard`: of a folder (or a
    mixture's folder part), the files it can read (Snakemake stops on a declared input that is missing,
    such as a broken symlink)."""
    return inputs.declared_files(SOURCE, source_options())


def pretrained_files(wildcards):
    """The network `train` imports (model.pretrained), declared so that replacing it reruns what follows."""
    pretrained = config["model"]["pretrained"]
    if not pretrained:
        return []
    path = Path(pretrained["path"])
    if path.is_file():
        return [str(path)]
    return [str(p) for p in (path / "model.pt", path / "exp_arguments.pkl") if p.is_file()]


def factor_outputs(wildcards):
    """Channel ↔ factor selectivity needs ground-truth factors: only the synthetic scenes have them."""
    return rules.factors.output if SOURCE == "synthetic" else []


def script_code(script):
    """workflow_scripts/<script>.py and the semcore files it imports: a rule's `code` input, so that editing
    them reruns the rule."""
    return code.script_code(WORKFLOW_DIR, script)


def written_manifest():
    """The manifest's path once `shard` has written it (an empty stand-in, as benchmarks/bench_dag.py's,
    does not count), else None."""
    path = Path(RESULTS, "manifest.parquet")
    return path if path.exists() and path.stat().st_size else None


def training_images():
    """Images of the train split (once `shard` has run): a schedule in epochs needs them; in steps, not."""
    if config["train"].get("epochs") is None:
        return 1
    manifest = Path(checkpoints.shard.get().output.manifest)
    return manifest_training_images(manifest, manifest.stat().st_mtime_ns)


@functools.cache
def manifest_training_images(manifest, mtime_ns):
    return sizes.training_images(manifest)


def final_step():
    """The last training step (its φ is the trained network's); None with model.pretrained."""
    return sizes.final_step(config, training_images())


def images_in_run():
    """Rows of the manifest (every input image), from its Parquet footer; 0 until it is written."""
    if not written_manifest():
        return 0
    return pq.ParquetFile(written_manifest()).metadata.num_rows


def label_count():
    """Distinct labels in the manifest (the classes the probe learns and the scores count); 0 until it is
    written."""
    import pyarrow.parquet as pq

    if not written_manifest():
        return 0
    return len(pq.read_table(written_manifest(), columns=["label"]).column("label").unique())


def analysis_mem_mb(rule_name):
    """A rule's mem_mb, by semcore.plan.resources: its memory model at this config and number of images
    (and the job's feature set and k, the labels' count where they matter)."""

    def mem_mb(wildcards):
        n_classes = label_count() if rule_name in ("probe", "semantic_scores", "emergence_step") else 0
        return resources.mem_mb(
            rule_name, config, images_in_run(), wildcards.get("features", "phi"), n_classes, int(wildcards.get("k", 0))
        )

    return mem_mb


# Used by rules/train.smk.


def train_gpus():
    """GPUs of the train job as the profile (or --set-resources) sets them; the rule's own: 1."""
    resources = dict(workflow.resource_settings.overwrite_resources.get("train", {}))
    gpu = resources.get("gpu", 1)
    return int(getattr(gpu, "value", gpu))  # parsed from a profile: a Resource; set from Python: the number


# Used by rules/phi.smk.


def shard_names():
    """The shards `shard` wrote: known once that checkpoint has run."""
    shard_dir = checkpoints.shard.get().output.shards
    return sorted(p.stem for p in Path(shard_dir).glob("*.tar"))


def phi_chunks():
    """φ's jobs: consecutive shards of one split, phi.shards_per_job at a time (semcore.plan.names)."""
    return names.chunks(shard_names(), config["phi"]["shards_per_job"])


def chunk_shards(wildcards):
    return [f"{RESULTS}/shards/{shard}.tar" for shard in names.chunk_shards(wildcards.chunk)]


def phi_runtime(sigmas):
    """Minutes for a φ job at these σ (semcore.plan.resources)."""

    def minutes(wildcards):
        images = len(chunk_shards(wildcards)) * config["data"]["samples_per_shard"]
        return resources.phi_minutes(config, images, sigmas)

    return minutes


def phi_files(wildcards):
    return expand(f"{RESULTS}/phi/{{chunk}}.parquet", chunk=phi_chunks())


def test_shards(wildcards):
    return expand(f"{RESULTS}/shards/{{shard}}.tar", shard=[s for s in shard_names() if s.startswith("test-")])


# Used by rules/stats.smk.


def stats_path(name):
    return f"{RESULTS}/stats/{name}.parquet"


def report_category(name):
    """The category of an analysis: "03 Sparsity"."""
    return names.report_category(name)


def report_subcategory(subcategory=None):
    """In a study's report (this workflow loaded once per run), a run's figures go under its name
    ("demo-deep: Scores"), beside the study's "All runs"; alone, as given."""
    if not workflow.modifier.is_module:
        return subcategory
    return f"{config['name']}: {subcategory}" if subcategory else config["name"]


def figure(name, category, subcategory=None):
    return report(
        f"{RESULTS}/figures/{name}.png",
        caption=f"../report/{name}.rst",
        category=report_category(category),
        subcategory=report_subcategory(subcategory),
    )


# Used by rules/cluster.smk.


def clustered_chunks():
    """φ's jobs (phi.shards_per_job shards each) that start among the shards holding the first
    cluster.max_images images (all shards when null): only those get φ of the snapshots."""
    shards = shard_names()
    if CLUSTER["max_images"]:
        shards = shards[: math.ceil(CLUSTER["max_images"] / config["data"]["samples_per_shard"])]
    first_shards = set(shards)
    return shards, [chunk for chunk in phi_chunks() if names.chunk_shards(chunk)[0] in first_shards]


def clustered_phi_files(folder):
    """The φ files in `folder` (phi, or a snapshot's under phi_snapshots) of the clustered images."""
    return expand(f"{RESULTS}/{folder}/{{chunk}}.parquet", chunk=clustered_chunks()[1])


def feature_files(wildcards):
    """φ files of the trained or untrained network (training's step 0), or the shards themselves for
    pixels, of the clustered images."""
    kind, _ = names.parse_feature_set(wildcards.features)
    if kind == "pixels":
        return expand(f"{RESULTS}/shards/{{shard}}.tar", shard=clustered_chunks()[0])
    return clustered_phi_files("phi" if kind == "phi" else "phi_snapshots/step-000000")


# Used by rules/emergence.smk.


def snapshot_phi_files(step):
    """φ files of the clustered images under the weights of training step `step`: the trained network's φ
    at the last step, the snapshot's otherwise."""
    return clustered_phi_files("phi" if step == final_step() else f"phi_snapshots/step-{step:06d}")


def emergence_outputs(wildcards):
    """The emergence table and figure; none with model.pretrained (no training to follow) or emergence.steps []."""
    return rules.emergence.output if emergence_tables(wildcards) else []


def emergence_tables(wildcards):
    steps = sizes.emergence_steps(config, training_images())
    return expand(f"{RESULTS}/emergence/step-{{step:06d}}.parquet", step=steps)


# Used by rules/sample.smk.


def sample_batches():
    """Batch indices of the configured targets (a count of first test images, or a list of keys)."""
    targets = SAMPLE["targets"]
    n = targets if isinstance(targets, int) else len(targets)
    return [f"{b:03d}" for b in range(-(-n // SAMPLE["targets_per_job"]))]


def sample_tables(kind):
    return expand(f"{RESULTS}/samples/{kind}/batch-{{batch}}.parquet", batch=sample_batches())


def train_phi_files(wildcards):
    return [path for path in phi_files(wildcards) if Path(path).name.startswith("train-")]


# sample_clusters samples the k-means clusters of the trained network's φ at the first cluster.sigmas σ, at
# sample.clusters.k (null: the largest of cluster.ks).
CLUSTER_SAMPLES = SAMPLE["clusters"]
SAMPLED_FEATURES = names.feature_set_names(CLUSTER["sigmas"][:1])[0]
SAMPLED_K = CLUSTER_SAMPLES["k"] or max(CLUSTER["ks"])


def cluster_sample_outputs(wildcards):
    """Samples of the largest clusters' centroids and their figure; none with sample.clusters.count 0."""
    return rules.sample_clusters.output if CLUSTER_SAMPLES["count"] else []


# Used by rules/gist.smk.


def has_gist():
    """Whether there is a gist to score: scene factors, or at least two labels (once `shard` has run); a
    folder without class sub-folders has none."""
    checkpoints.shard.get()
    return SOURCE == "synthetic" or label_count() >= 2


def gist_agreement(wildcards):
    return rules.gist_scores.output.agreement if has_gist() else []


def gist_accuracy(wildcards):
    return rules.gist_classifier.output.accuracy if has_gist() else []


def gist_mem_mb(images):
    return resources.gist_mem_mb(config, images)
