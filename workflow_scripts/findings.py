"""Adapter for rule `findings`: the paper's claims against this run's tables → Parquet, Markdown, HTML."""
import sys

import pandas as pd

from semcore import figures, findings
from semcore.files import atomic
from semcore.progress import job_log
from semcore.shards import write_parquet

job_log(snakemake)
i = snakemake.input
table = findings.table(pd.read_parquet(i.block_pr), pd.read_parquet(i.stability), findings.read_channels_summary(i.channels),
                       pd.read_parquet(i.groups), pd.read_parquet(i.semantic_scores),
                       pd.read_parquet(i.agreement) if i.agreement else None)
write_parquet(table, snakemake.output.table)
title = f"Findings on {snakemake.params.name}"
text = findings.markdown(table, title)
with atomic(snakemake.output.markdown) as tmp:
    tmp.write_text(text)
figures.html_tables([(title, table.set_index("claim").rename_axis(None))], snakemake.output.html)
print(text, file=sys.stderr)
