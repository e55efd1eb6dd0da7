"""Adapter for rule `findings`: the paper's claims against this run's tables → Parquet, Markdown, HTML."""
import sys

import pandas as pd

from semcore import findings
from semcore.files import atomic
from semcore.shards import write_parquet

sys.stderr = open(snakemake.log[0], "w")
i = snakemake.input
table = findings.table(pd.read_parquet(i.block_pr), pd.read_parquet(i.stability), findings.read_channels_summary(i.channels),
                       pd.read_parquet(i.groups), pd.read_parquet(i.semantic_scores),
                       pd.read_parquet(i.agreement) if i.agreement else None)
write_parquet(table, snakemake.output.table)
text = findings.markdown(table, f"Findings on {snakemake.params.name}")
for path, content in ((snakemake.output.markdown, text),
                      (snakemake.output.html, table.to_html(index=False, float_format="%.3g", border=0))):
    with atomic(path) as tmp:
        tmp.write_text(content)
print(text, file=sys.stderr)
