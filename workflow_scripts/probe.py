"""Adapter for rule `probe`: a linear read-out of one feature set, fit on the train split, scored on test."""
import sys

import pandas as pd

from semcore import scores
from semcore.features import read_features
from semcore.shards import factor_table, write_parquet

sys.stderr = open(snakemake.log[0], "w")
p = snakemake.params

meta, x = read_features(snakemake.wildcards.features, snakemake.input.features, p.max_images)
# The label and the categorical factors: a probe per numeric factor's bins would cost more than it tells.
factors = factor_table(pd.read_parquet(snakemake.input.manifest)).reindex(meta.key.to_numpy()).select_dtypes(exclude="number")
train = (meta.split == "train").to_numpy()
x = scores.probe_features(x, train, p.seed)
rows = []
for target, values in scores.semantic_targets(meta.label, factors).items():
    values = values.to_numpy()
    defined = pd.notna(values)
    fit, held_out = train & defined, ~train & defined
    if len(set(values[fit])) < 2:
        continue  # nothing to learn: one class among the train images
    accuracy = scores.probe_accuracy(x[fit], values[fit].astype(str), x[held_out], values[held_out].astype(str),
                                     max_iter=p.max_iter, seed=p.seed)
    rows.append(dict(features=snakemake.wildcards.features, target=target, metric="probe accuracy", value=accuracy))
    print(f"{target}: {accuracy:.3f}", file=sys.stderr)
write_parquet(pd.DataFrame(rows), snakemake.output[0])
