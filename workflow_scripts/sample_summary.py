"""Adapter for rule `sample_summary`: all batches in one table, a grid per target, the φ error figure."""
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from semcore import figures, shards
from semcore.images import decode_png
from semcore.joblog import job_log
from semcore.tables import samples_schema, write_table

job_log(snakemake)
arrow = pa.concat_tables([pq.read_table(path) for path in [*snakemake.input.guided, *snakemake.input.unconditional]])
write_table(arrow, snakemake.output.table, samples_schema(arrow.schema.field("phi").type.list_size))
table = arrow.drop_columns(["phi"]).to_pandas()
figures.sample_phi_error(table, snakemake.output.figure)

# Per target: the conditioner and its self-guided samples; below each sample its nearest training image in
# φ space; then the unconditional samples scored against this target.
guided, unconditional = (table[table.method == m] for m in ("self-guided", "unconditional"))
images = shards.images_by_key(snakemake.input.shards, pd.read_parquet(snakemake.input.manifest),
                              [*guided.key.unique(), *guided.nn_key])
out = Path(snakemake.output.grids)
out.mkdir(parents=True, exist_ok=True)
decode = decode_png
names = pd.read_parquet(snakemake.input.manifest).set_index("key").label_name
for (index, key), rows in guided.groupby(["target", "key"]):
    baseline = unconditional[unconditional.target == index]
    samples = max(len(rows), len(baseline))
    figures.montage([("self-guided", [images[key], *map(decode, rows.png)]),
                     ("nearest training image (φ)", [None, *(images[k] for k in rows.nn_key)]),
                     ("unconditional", [None, *map(decode, baseline.png)])],
                    out / f"target-{index:03d}.png", columns=["target", *(f"sample {i + 1}" for i in range(samples))],
                    title=f"Target {index}: {names[key] or key}")

summary = table.groupby("method", sort=False)[["phi_error", "pixel_distance", "diversity", "nn_phi_distance"]]
print(summary.mean().to_string(), file=sys.stderr)
