"""Adapter for rule `semantic_scores`: cluster scores of every k-means run and the probe accuracies, in one
tidy table (representation, σ, method, k, target, metric, value) and one figure."""
import sys
from pathlib import Path

import pandas as pd

from semcore import figures, scores
from semcore.joblog import job_log
from semcore.plan.names import parse_feature_set as parse
from semcore.shards import factor_table
from semcore.tables import SEMANTIC_SCORES, write_table

job_log(snakemake)
factors = factor_table(pd.read_parquet(snakemake.input.manifest))

frames = []
for path in snakemake.input.assignments:  # …/clusters/<features>/k<k>/assignments.parquet
    features, k = Path(path).parts[-3], int(Path(path).parts[-2][1:])
    assignments = pd.read_parquet(path)
    targets = scores.semantic_targets(assignments.label, factors.reindex(assignments.key.to_numpy()))
    frames.append(scores.cluster_score_table(assignments.cluster.to_numpy(), targets)
                  .assign(features=features, method="k-means", k=k))
frames += [pd.read_parquet(path).assign(method="linear probe", k=None) for path in snakemake.input.probes]
table = pd.concat(frames, ignore_index=True)
parsed = table.features.map(parse)
table.insert(1, "representation", parsed.str[0])
table.insert(2, "sigma", parsed.str[1].astype(float))
table = table[["features", "representation", "sigma", "method", "k", "target", "metric", "value"]].astype({"k": "Int64"})
write_table(table, snakemake.output.table, SEMANTIC_SCORES)
figures.semantic_scores(table, snakemake.output.figure)
figures.html_tables(figures.semantic_scores_summary(table), snakemake.output.summary)
print(table.set_index(["method", "k", "target", "metric", "features"]).value.unstack().to_string(float_format="%.3f"),
      file=sys.stderr)
