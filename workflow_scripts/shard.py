"""Adapter for rule `shard`: source items → WebDataset shards + manifest."""

from semcore import shards
from semcore.joblog import job_log
from semcore.sources import iter_items
from semcore.tables import MANIFEST, write_table

job_log(snakemake)

p = snakemake.params
items = iter_items(p.source, p.options, size=p.size, seed=p.seed)
manifest = shards.write_shards(items, snakemake.output.shards, source=p.source, size=p.size, channels=p.channels,
                               min_size=p.min_size, test_fraction=p.test_fraction, seed=p.seed,
                               samples_per_shard=p.samples_per_shard)
write_table(manifest, snakemake.output.manifest, MANIFEST)
