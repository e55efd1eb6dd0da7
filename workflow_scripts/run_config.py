"""Adapter for rule `run_config`: the config this run is made with, its defaults filled in, kept in the run's
folder (the `semcore` command takes a run's sampler settings from it)."""
import yaml

from semcore.files import atomic
from semcore.joblog import job_log

job_log(snakemake)
with atomic(snakemake.output[0]) as tmp:
    tmp.write_text(yaml.safe_dump(snakemake.params.config, sort_keys=False, allow_unicode=True))
