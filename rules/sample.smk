# Self-guided stochastic reconstruction (paper section 6): the unconditional denoiser draws images whose φ
# matches a conditioning image's, one job per batch of targets; unconditional samples of the same count,
# scored against the same targets, are the baseline. Both read the training set's φ for nearest neighbours.


rule sample:
    input:
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        model=rules.train.output.model,
        train_phi=train_phi_files,
        code=script_code("sample"),
    output:
        f"{RESULTS}/samples/guided/batch-{{batch}}.parquet",
    log:
        f"{RESULTS}/logs/sample/guided-{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample/guided-{{batch}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,
    params:
        guided=True,
        algorithm=SAMPLE["algorithm"],
        targets=SAMPLE["targets"],
        targets_per_job=SAMPLE["targets_per_job"],
        samples_per_target=SAMPLE["samples_per_target"],
        top_k=SAMPLE["top_k"],
        n_noise=SAMPLE["n_noise"],
        seed=SAMPLE["seed"],
        start=SAMPLE["start"],
        schedule=SAMPLE["schedule"] if SAMPLE["algorithm"] == "fixed" else None,
        ascent=sampler.resolved_ascent(SAMPLE["ascent"]) if SAMPLE["algorithm"] == "adaptive" else None,
        matching=SAMPLE["matching"],
        score_sigma=sampler.sampler_final_sigma(SAMPLE),
        phi_sigmas=config["phi"]["sigmas"],
        phi_n_noise=config["phi"]["n_noise"],
        device=config["device"],
    script:
        "../workflow_scripts/sample.py"


use rule sample as sample_unconditional with:
    output:
        f"{RESULTS}/samples/unconditional/batch-{{batch}}.parquet",
    log:
        f"{RESULTS}/logs/sample/unconditional-{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample/unconditional-{{batch}}.tsv"
    params:
        guided=False,
        algorithm="ascent",
        start=UNCONDITIONAL_START,
        schedule=None,
        ascent=UNCONDITIONAL_ASCENT,
        matching=None,


# The k-means clusters' centroids as targets (one job): what the largest clusters' members share, drawn by the
# same sampler; scored against their centroid at the clustered σ, so that φ error and nearest cluster compare
# like with like.
rule sample_clusters:
    input:
        centroids=expand(rules.kmeans.output.centroids, features=SAMPLED_FEATURES, k=SAMPLED_K)[0],
        assignments=expand(rules.kmeans.output.assignments, features=SAMPLED_FEATURES, k=SAMPLED_K)[0],
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        model=rules.train.output.model,
        train_phi=train_phi_files,
        code=script_code("sample_clusters"),
    output:
        table=f"{RESULTS}/samples/clusters.parquet",
        figure=figure("sample_clusters", "Sampling"),
    log:
        f"{RESULTS}/logs/sample/clusters.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample/clusters.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,
    params:
        features=SAMPLED_FEATURES,
        k=SAMPLED_K,
        sigma=CLUSTER["sigmas"][0],
        cluster_count=CLUSTER_SAMPLES["count"],
        samples_per_cluster=CLUSTER_SAMPLES["samples_per_cluster"] or SAMPLE["samples_per_target"],
        members=CLUSTER_SAMPLES["members"],
        algorithm=SAMPLE["algorithm"],
        top_k=SAMPLE["top_k"],
        n_noise=SAMPLE["n_noise"],
        seed=SAMPLE["seed"],
        start=SAMPLE["start"],
        schedule=SAMPLE["schedule"] if SAMPLE["algorithm"] == "fixed" else None,
        ascent=sampler.resolved_ascent(SAMPLE["ascent"]) if SAMPLE["algorithm"] == "adaptive" else None,
        matching=SAMPLE["matching"],
        phi_sigmas=config["phi"]["sigmas"],
        phi_n_noise=config["phi"]["n_noise"],
        device=config["device"],
    script:
        "../workflow_scripts/sample_clusters.py"


rule sample_summary:
    input:
        guided=sample_tables("guided"),
        unconditional=sample_tables("unconditional"),
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("sample_summary"),
    output:
        table=f"{RESULTS}/samples/samples.parquet",
        grids=report(
            directory(f"{RESULTS}/figures/samples"),
            patterns=["{name}.png"],
            caption="../report/sample_grids.rst",
            category=report_category("Sampling"),
            subcategory=report_subcategory(),
        ),
        figure=report(
            f"{RESULTS}/figures/sample_phi_error.png",
            caption="../report/sample_phi_error.rst",
            category=report_category("Sampling"),
            subcategory=report_subcategory(),
        ),
    log:
        f"{RESULTS}/logs/sample_summary.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../workflow_scripts/sample_summary.py"
