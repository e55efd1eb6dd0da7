"""Adapter for rule `data_overview`: example images of each label and the inputs counted by status and split."""
import sys

import pandas as pd

from semcore import figures
from semcore.joblog import job_log
from semcore.shards import images_by_key

job_log(snakemake)
p = snakemake.params
manifest = pd.read_parquet(snakemake.input.manifest)
written = manifest[manifest.status == "written"]
# The first images of the labels shown, in manifest order: only the shards holding them are read.
shown = sorted(written.label.unique())[:p.labels]
keys = written[written.label.isin(shown)].groupby("label").head(p.examples).key.tolist()
figures.data_overview(manifest, images_by_key(snakemake.input.shards, manifest, keys), snakemake.output.figure,
                      labels=p.labels, examples=p.examples)
print(figures.skip_kind(manifest).to_frame("status").assign(split=manifest.split).value_counts().to_string(),
      file=sys.stderr)
