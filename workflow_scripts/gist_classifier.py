"""Adapter for rule `gist_classifier`: the gist classifier trained on the train split (to convergence on a
validation split carved from it), its test accuracy per head with a bootstrap interval, against chance."""
import logging
import sys
import time

import pandas as pd
import torch

from semcore import gist
from semcore.joblog import job_log
from semcore.tables import GIST_ACCURACY, write_table

job_log(snakemake)
torch.set_num_threads(snakemake.threads)

p = snakemake.params
config = gist.GistConfig(max_steps=p.max_steps, patience=p.patience, eval_every=p.eval_every,
                         val_fraction=p.val_fraction, batch_size=p.batch_size, lr=p.lr, hue_bins=p.hue_bins,
                         seed=p.seed, width=p.width)
manifest = pd.read_parquet(snakemake.input.manifest)
truth, classes = gist.gist_targets(manifest, config.hue_bins)
keys, images = gist.split_images(snakemake.input.shards, manifest, "train", p.max_train_images, config.seed)
logging.info("%s; %d train images %s; heads %s", config, len(keys), tuple(images.shape[1:]),
             {name: len(names) for name, names in classes.items()})

began = time.perf_counter()
net = gist.train(images, torch.from_numpy(truth.loc[keys].to_numpy()), classes, config)
logging.info("trained in %.1f s on %d thread(s)", time.perf_counter() - began, snakemake.threads)
net.save(snakemake.output.classifier)

keys, images = gist.split_images(snakemake.input.shards, manifest, "test", p.max_test_images, config.seed)
table = gist.accuracy(gist.predict(net, images).set_axis(keys), truth.loc[keys], resamples=p.resamples,
                      confidence=p.confidence, seed=p.bootstrap_seed)
write_table(table, snakemake.output.accuracy, GIST_ACCURACY)
print(table.to_string(float_format="%.3f"), file=sys.stderr)
for row in table[~table.above_chance].itertuples():
    logging.warning("gist head %s: test accuracy %.3f [%.3f, %.3f] is not clearly above chance %.3f: its verdicts "
                    "are undecided", row.head, row.accuracy, row.accuracy_low, row.accuracy_high, row.chance)
