"""Adapter for rule `sparsity`: per-image PR of every block's channel means (paper fig. 1)."""
import sys

from semcore import figures, stats
from semcore.phi import read_block_means
from semcore.shards import write_parquet

sys.stderr = open(snakemake.log[0], "w")
table = stats.block_pr_table(read_block_means(snakemake.input.block_means), snakemake.params.sigma)
write_parquet(table, snakemake.output.table)
figures.block_pr_histograms(table, snakemake.params.sigma, snakemake.output.figure)
print(table.groupby("block", sort=False).pr.mean().to_string(), file=sys.stderr)
