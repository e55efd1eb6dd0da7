import os
from pathlib import Path

from snakemake.utils import validate

from semcore import config as semcore_config
from semcore.sources import list_folder

validate(config, schema="../schemas/config.schema.yaml")
semcore_config.check(config)

# Workflow scripts import semcore from this checkout, also inside --software-deployment-method conda envs.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))

RESULTS = f"results/{config['name']}"
SOURCE = config["data"]["source"]


def source_options():
    """Only the chosen source's options reach `shard`: editing another source's section reruns nothing."""
    return config["data"][SOURCE]


def source_files(wildcards):
    """Inputs on disk are declared, so adding, removing or touching one reruns `shard`."""
    if SOURCE == "folder":
        return [str(p) for p in list_folder(Path(config["data"]["folder"]["path"]))]
    if SOURCE == "imagenet64":
        return config["data"]["imagenet64"]["paths"]
    return []


def factor_outputs(wildcards):
    """Channel ↔ factor selectivity needs ground-truth factors: only the synthetic scenes have them."""
    return rules.factors.output if SOURCE == "synthetic" else []
