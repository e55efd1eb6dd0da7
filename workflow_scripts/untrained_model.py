"""Adapter for rule `untrained_model`: the network at the weights training starts from (the baseline)."""
import sys

from semcore.model import UNetConfig, initial_model

sys.stderr = open(snakemake.log[0], "w")
p = snakemake.params
initial_model(UNetConfig(in_channels=p.in_channels, **p.model), p.seed).save_pretrained(snakemake.output.model)
