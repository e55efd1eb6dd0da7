"""Adapter for rule `neighbour_graph`: every mapped image's exact nearest neighbours among them, in one space
(φ or untrained φ at a σ, or the pixels), for the explorer."""
import sys

import numpy as np
import pandas as pd
import torch

from semcore.cluster import neighbour_graph
from semcore.features import read_features
from semcore.joblog import job_log
from semcore.runtime import resolve_device
from semcore.tables import NEIGHBOUR_GRAPH, write_table

job_log(snakemake)
torch.set_num_threads(snakemake.threads)
p = snakemake.params

meta, x = read_features(snakemake.wildcards.features, snakemake.input.features, p.max_images)
found, distances = neighbour_graph(x, p.neighbours, resolve_device(p.device))
keys = meta.key.to_numpy()
write_table(pd.DataFrame({"key": np.repeat(keys, p.neighbours), "rank": np.tile(np.arange(1, p.neighbours + 1), len(x)),
                          "neighbour": keys[found].ravel(), "distance": distances.ravel()}), snakemake.output[0],
            NEIGHBOUR_GRAPH)
same = (meta.label.to_numpy()[found] == meta.label.to_numpy()[:, None]).mean()
print(f"{len(x)} images × {x.shape[1]}: {same:.3f} of the neighbours share the image's label", file=sys.stderr)
