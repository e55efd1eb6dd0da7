import ast
import functools
import math
import os
from pathlib import Path

from snakemake.utils import validate

from semcore import config as semcore_config, schema
from semcore.features import feature_set_names, parse as parse_feature_set
from semcore.sources import input_files

schema.validate(config, f"{workflow.basedir}/schemas/config.schema.yaml")  # a short line per error
validate(config, schema="../schemas/config.schema.yaml")  # fills in the defaults
semcore_config.check(config)

# Workflow scripts import semcore from this checkout, also inside --software-deployment-method conda envs.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))

RESULTS = f"results/{config['name']}"
SOURCE = config["data"]["source"]


def source_options():
    """Only the chosen source's options reach `shard`: editing another source's section reruns nothing."""
    return config["data"][SOURCE]


def source_files(wildcards):
    """Inputs on disk are declared, so adding, removing or touching one reruns `shard`: of a folder, the files
    it can read (Snakemake stops on a declared input that is missing, such as a broken symlink)."""
    if SOURCE == "folder":
        return [str(p) for p in input_files(Path(config["data"]["folder"]["path"]))]
    if SOURCE == "imagenet64":
        return config["data"]["imagenet64"]["paths"]
    return []


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


@functools.cache
def semcore_imports(path):
    """The semcore modules a Python file imports (its direct imports)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        modules = (Path(workflow.basedir, *name.split(".")).with_suffix(".py") for name in names)
        found += [m for m in modules if m.parts[-2:-1] == ("semcore",) and m.is_file()]
    return found


def script_code(script):
    """A workflow script and every semcore module it imports, transitively. Declared as the `code` input
    of the rule that runs it, so editing that code reruns the rule (Snakemake's own code trigger sees the
    rule's text, not the modules it imports)."""
    todo, seen = [Path(workflow.basedir, "workflow_scripts", f"{script}.py")], set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += semcore_imports(path)
    return sorted(str(p) for p in seen)


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
    return semcore_config.training_images(manifest)


def final_step():
    """The last training step (its φ is the trained network's); None with model.pretrained."""
    return semcore_config.final_step(config, training_images())


def images_in_run():
    """Rows of the manifest (every input image), from its Parquet footer; 0 until it is written."""
    import pyarrow.parquet as pq

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
    """mem_mb of a rule from semcore.resources: its memory model at this config and number of images
    (and the job's feature set and k, the labels' count where they matter)."""
    from semcore import resources

    def mem_mb(wildcards):
        n_classes = label_count() if rule_name in ("probe", "semantic_scores", "emergence_step") else 0
        return resources.mem_mb(rule_name, config, images_in_run(), wildcards.get("features", "phi"), n_classes,
                                int(wildcards.get("k", 0)))

    return mem_mb
