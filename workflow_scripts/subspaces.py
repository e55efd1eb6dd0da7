"""Adapter for rule `subspaces`: groups sharing active selective channels against random groups, tested on
held-out images (paper fig. 5; semcore.subspaces)."""
import sys

import pandas as pd

from semcore import figures, subspaces
from semcore.joblog import job_log
from semcore.phi import read_phi
from semcore.tables import SUBSPACE_GROUPS, SUBSPACE_HELDOUT, SUBSPACE_PAIRS, write_table

job_log(snakemake)
p = snakemake.params
meta, phi = read_phi(snakemake.input.phi, p.sigma)
selective = pd.read_parquet(snakemake.input.channels).selective.to_numpy()
groups, pairs, heldout = subspaces.union_of_subspaces(phi, selective, p.active_fraction, p.min_group_size, p.energy,
                                                      p.seed, keys=meta.key.to_numpy())
write_table(groups, snakemake.output.groups, SUBSPACE_GROUPS)
write_table(pairs, snakemake.output.pairs, SUBSPACE_PAIRS)
write_table(heldout, snakemake.output.heldout, SUBSPACE_HELDOUT)
figures.subspace_comparison(groups, pairs, heldout, snakemake.output.figure)
if len(groups):
    print(groups.groupby("kind")[["size", "dimension", "pr_dimension", "fit_size", "fit_dimension"]].mean().to_string(),
          file=sys.stderr)
    print(pairs.groupby("kind")[["min_angle", "mean_angle"]].mean().to_string(), file=sys.stderr)
    means = heldout.groupby("kind")[["own_residual", "other_residual"]].mean()
    print((means.own_residual / means.other_residual).rename("held-out ratio own / other").to_string(), file=sys.stderr)
else:
    print("fewer than two groups: no subspace to compare", file=sys.stderr)
