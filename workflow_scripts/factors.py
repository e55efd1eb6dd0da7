"""Adapter for rule `factors`: mutual information between channels and ground-truth scene factors."""
import sys

import pandas as pd

from semcore import figures, stats
from semcore.joblog import job_log
from semcore.phi import read_phi
from semcore.shards import factor_table
from semcore.tables import FACTOR_MUTUAL_INFORMATION, write_table

job_log(snakemake)
meta, phi = read_phi(snakemake.input.phi, snakemake.params.sigma)
factors = factor_table(pd.read_parquet(snakemake.input.manifest)).reindex(meta.key.to_numpy())
table = stats.factor_mutual_information(phi, factors, snakemake.params.seed)
write_table(table, snakemake.output.table, FACTOR_MUTUAL_INFORMATION)
figures.factor_heatmap(table, snakemake.output.figure)
print(table.sort_values("mutual_information", ascending=False).groupby("factor").head(3).to_string(), file=sys.stderr)
