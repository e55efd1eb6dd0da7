"""Adapter for rule `emergence`: every snapshot's scores in one table, and the figure against pixels."""
import sys

import pandas as pd

from semcore import figures
from semcore.joblog import job_log
from semcore.tables import EMERGENCE, write_table

job_log(snakemake)
table = pd.concat([pd.read_parquet(path) for path in snakemake.input.steps], ignore_index=True)
write_table(table, snakemake.output.table, EMERGENCE)
scores = pd.read_parquet(snakemake.input.semantic_scores)
figures.emergence(table, scores[scores.representation == "pixels"], snakemake.output.figure)
print(table.pivot_table(index=["method", "sigma", "k", "target", "metric"], columns="step", values="value",
                        dropna=False).dropna(how="all").to_string(float_format="%.3f"), file=sys.stderr)
