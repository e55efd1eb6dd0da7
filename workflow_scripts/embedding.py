"""Adapter for rule `embedding`: the mapped images' 2-D positions from their φ, PCA and t-SNE."""
from semcore.embedding import embedding
from semcore.joblog import job_log
from semcore.phi import read_phi
from semcore.tables import EMBEDDING, write_table

job_log(snakemake)
p = snakemake.params

meta, phi = read_phi(snakemake.input.phi, p.sigma)
meta, phi = meta[:p.max_images], phi[:p.max_images]
maps = embedding(phi, p.perplexity, p.seed, snakemake.threads)
maps.insert(0, "key", meta.key.to_numpy())
write_table(maps, snakemake.output[0], EMBEDDING)
