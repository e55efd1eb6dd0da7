"""Adapter for rule `block_semantics`: k-means AMI and a cross-validated linear probe of every block's ā at
every σ, and of the same images' pixels → a table and a block × σ heatmap."""
import sys

import pandas as pd
import torch

from semcore import figures
from semcore.block_semantics import Settings, block_semantics_table
from semcore.features import read_pixels
from semcore.joblog import job_log
from semcore.shards import factor_table, shard_paths
from semcore.tables import BLOCK_SEMANTICS, write_table

job_log(snakemake)
torch.set_num_threads(snakemake.threads)
p = snakemake.params

# block_means' images: the first stats.block_means_images of the test shards, in order
pixel_meta, pixels = read_pixels(shard_paths(snakemake.input.shards, "test"), p.max_images)
factors = factor_table(pd.read_parquet(snakemake.input.manifest))
settings = Settings(**{name: getattr(p, name) for name in Settings.__dataclass_fields__})
table = block_semantics_table(snakemake.input.block_means, pixel_meta.key, pixels, factors, settings)
write_table(table, snakemake.output.table, BLOCK_SEMANTICS)
figures.block_semantics(table, snakemake.output.figure)
print(table.pivot_table(index=["target", "score", "block_index", "block"], columns="sigma", values="value",
                        dropna=False).dropna(how="all").to_string(float_format="%.3f"), file=sys.stderr)
