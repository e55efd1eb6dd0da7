# semcore: the sparse semantic representation of an unconditional UNet denoiser (Kadkhodaie, Mallat,
# Simoncelli). Read top to bottom: images → shards → a trained blind denoiser → … (see rules/).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# A study (configs/study-*.yaml: a `study:` section listing runs) loads this workflow once per run, as a
# Snakemake module with that run's config, and compares the runs side by side (rules/study.smk).
if "study" in config:

    include: "rules/study.smk"

    rule study:
        default_target: True
        input:
            RUN_OUTPUTS,
            STUDY_OUTPUTS,

else:

    report: "report/workflow.rst"

    include: "rules/common.smk"
    include: "rules/data.smk"
    include: "rules/train.smk"
    include: "rules/phi.smk"
    include: "rules/stats.smk"
    include: "rules/cluster.smk"
    include: "rules/sample.smk"
    include: "rules/gist.smk"
    include: "rules/emergence.smk"
    include: "rules/findings.smk"
    include: "rules/explorer.smk"

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
            rules.block_semantics.output,
            rules.selectivity.output,
            rules.subspaces.output,
            factor_outputs,
            expand(rules.kmeans.output, features=FEATURE_SETS, k=CLUSTER["ks"]),
            rules.neighbours.output,
            rules.semantic_scores.output,
            rules.sample_summary.output,
            cluster_sample_outputs,
            gist_agreement,
            emergence_outputs,
            rules.findings.output,
            rules.explorer.output,
