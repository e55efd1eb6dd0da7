"""Adapter for rule `subspaces`: groups sharing active selective channels vs shuffled groups (paper fig. 5)."""
import sys

import pandas as pd

from semcore import figures, stats
from semcore.phi import read_phi
from semcore.progress import job_log
from semcore.shards import write_parquet

job_log(snakemake)
p = snakemake.params
_, phi = read_phi(snakemake.input.phi, p.sigma)
selective = pd.read_parquet(snakemake.input.channels).selective.to_numpy()
groups, pairs = stats.union_of_subspaces(phi, selective, p.active_fraction, p.min_group_size, p.energy, p.seed)
write_parquet(groups, snakemake.output.groups)
write_parquet(pairs, snakemake.output.pairs)
figures.subspace_comparison(groups, pairs, snakemake.output.figure)
print(groups.groupby("kind")[["size", "dimension", "pr_dimension"]].mean().to_string() if len(groups) else "no groups", file=sys.stderr)
print(pairs.groupby("kind")[["min_angle", "mean_angle"]].mean().to_string(), file=sys.stderr)
