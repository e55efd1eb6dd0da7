# semcore: the sparse semantic representation of an unconditional UNet denoiser (Kadkhodaie, Mallat,
# Simoncelli). Read top to bottom: images → shards → a trained blind denoiser → … (see rules/).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/phi.smk"
include: "rules/stats.smk"
include: "rules/sample.smk"
include: "rules/gist.smk"
include: "rules/cluster.smk"
include: "rules/emergence.smk"
include: "rules/findings.smk"


rule all:
    default_target: True
    input:
        rules.run_config.output,
        rules.shard.output.manifest,
        rules.data_overview.output,
        rules.train.output.model,
        rules.train.output.curve,
        phi_files,
        rules.sparsity.output,
        rules.stability.output,
        rules.selectivity.output,
        rules.subspaces.output,
        factor_outputs,
        expand(rules.kmeans.output, features=FEATURE_SETS, k=CLUSTER["ks"]),
        rules.neighbours.output,
        rules.semantic_scores.output,
        rules.sample_summary.output,
        gist_agreement,
        emergence_outputs,
        rules.findings.output,
