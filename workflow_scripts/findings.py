"""Adapter for rule `findings`: the paper's claims against this run's tables, with intervals and verdicts
→ Parquet, Markdown, HTML."""
import sys

import pandas as pd

from semcore import figures, findings
from semcore.files import atomic
from semcore.joblog import job_log
from semcore.tables import FINDINGS, write_table

job_log(snakemake)
i, p = snakemake.input, snakemake.params
settings = findings.Bootstrap(p.resamples, p.confidence, p.seed)
assignments = {kind: pd.read_parquet(path, columns=["key", "label", "cluster"])
               for kind, path in zip(p.representations, i.assignments)}
predictions = {kind: pd.read_parquet(path) for kind, path in zip(p.representations, i.predictions)}
rows = [findings.sparsity(pd.read_parquet(i.block_pr), settings),
        findings.stability(pd.read_parquet(i.stability), p.stability_sigma, settings),
        findings.selectivity(findings.read_json(i.channels)),
        findings.union_of_subspaces(pd.read_parquet(i.heldout), settings),
        *findings.semantic_clustering(assignments, p.sigma, p.k, settings),
        *findings.probe(predictions, p.sigma, settings)]
if i.agreement:
    rows += findings.gist(pd.read_parquet(i.agreement), pd.read_parquet(i.gist_accuracy), settings)
table = findings.table(rows)
write_table(table, snakemake.output.table, FINDINGS)
title = f"Findings on {p.name}"
text = findings.markdown(table, title)
with atomic(snakemake.output.markdown) as tmp:
    tmp.write_text(text)
figures.html_tables([(title, table.set_index("claim").rename_axis(None))], snakemake.output.html)
print(text, file=sys.stderr)
