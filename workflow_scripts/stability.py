"""Adapter for rule `stability`: cosine similarity of ā across noise levels, per block (paper fig. 2)."""
import sys

from semcore import figures, stats
from semcore.phi import read_block_means
from semcore.shards import write_parquet

sys.stderr = open(snakemake.log[0], "w")
table = stats.stability_table(read_block_means(snakemake.input.block_means), snakemake.params.sigma1)
write_parquet(table, snakemake.output.table)
figures.stability_curves(table, snakemake.params.sigma1, snakemake.output.figure)
print(table.groupby(["block", "sigma"], sort=False).cosine.mean().unstack().to_string(), file=sys.stderr)
