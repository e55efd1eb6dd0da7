"""Adapter for rule `probe`: a linear read-out of one feature set, fit on the train split, scored on test:
whether it gets each test image right, and its accuracy."""
import sys

import pandas as pd

from semcore import scores
from semcore.features import read_features
from semcore.joblog import job_log
from semcore.shards import factor_table
from semcore.tables import PROBE_ACCURACY, PROBE_PREDICTIONS, write_table

job_log(snakemake)
p = snakemake.params

meta, x = read_features(snakemake.wildcards.features, snakemake.input.features, p.max_images)
factors = factor_table(pd.read_parquet(snakemake.input.manifest)).reindex(meta.key.to_numpy())
predictions = scores.probe_predictions(meta, x, factors, max_iter=p.max_iter, seed=p.seed)
table = scores.probe_table(predictions)
print(table.to_string(float_format="%.3f"), file=sys.stderr)
write_table(predictions, snakemake.output.predictions, PROBE_PREDICTIONS)
write_table(table.assign(features=snakemake.wildcards.features), snakemake.output.accuracy, PROBE_ACCURACY)
