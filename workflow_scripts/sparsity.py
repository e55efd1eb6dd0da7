"""Adapter for rule `sparsity`: per-image PR of every block's channel means (paper fig. 1)."""
import sys

import pyarrow.parquet as pq

from semcore import figures, stats
from semcore.joblog import job_log
from semcore.tables import BLOCK_PR, write_table

job_log(snakemake)
sigma = snakemake.params.sigma
# only the rows at stats.sigma, not the whole file
at_sigma = pq.read_table(snakemake.input.block_means,
                         filters=[("sigma", ">", sigma - 1e-6), ("sigma", "<", sigma + 1e-6)])
table = stats.block_pr_table(at_sigma, sigma)
write_table(table, snakemake.output.table, BLOCK_PR)
figures.block_pr_histograms(table, sigma, snakemake.output.figure)
print(table.groupby("block", sort=False).pr.mean().to_string(), file=sys.stderr)
