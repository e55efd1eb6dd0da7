"""Adapter for rules `explorer` and `study_explorer`: the page, from one bundle per run."""
import json
from pathlib import Path

from semcore.explorer_page import page
from semcore.files import atomic
from semcore.joblog import job_log

job_log(snakemake)

bundles = [json.loads(Path(path).read_text()) for path in snakemake.input.bundles]
with atomic(snakemake.output[0]) as tmp:
    tmp.write_text(page(bundles, snakemake.params.title), encoding="utf-8")
