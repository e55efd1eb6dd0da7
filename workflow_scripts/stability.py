"""Adapter for rule `stability`: cosine similarity of ā across noise levels, per block (paper fig. 2)."""
import sys

import pandas as pd
import pyarrow.parquet as pq

from semcore import figures, stats
from semcore.joblog import job_log
from semcore.tables import STABILITY, write_table

job_log(snakemake)
path = snakemake.input.block_means
# one block at a time: every σ of one block's means in memory, not of all blocks
blocks = pq.read_table(path, columns=["block"]).column("block").unique().to_pylist()
table = pd.concat([stats.stability_table(pq.read_table(path, filters=[("block", "=", block)]), snakemake.params.sigma1)
                   for block in blocks], ignore_index=True)
write_table(table, snakemake.output.table, STABILITY)
figures.stability_curves(table, snakemake.params.sigma1, snakemake.output.figure)
print(table.groupby(["block", "sigma"], sort=False).cosine.mean().unstack().to_string(), file=sys.stderr)
