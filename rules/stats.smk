# What the middle block represents: sparsity and stability per block, channel selectivity, the union of
# subspaces, and (on sources with ground truth) which channels encode which generative factor.


rule sparsity:
    input:
        block_means=rules.block_means.output[0],
        code=script_code("sparsity"),
    output:
        table=stats_path("block_pr"),
        figure=figure("block_pr", "Sparsity"),
    log:
        f"{RESULTS}/logs/sparsity.log",
    benchmark:
        f"{RESULTS}/benchmarks/sparsity.tsv"
    localrule: True  # seconds and little memory: in the Snakemake process, never a cluster job
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("sparsity"),
        runtime=30,
    params:
        sigma=config["stats"]["sigma"],
    script:
        "../workflow_scripts/sparsity.py"


rule stability:
    input:
        block_means=rules.block_means.output[0],
        code=script_code("stability"),
    output:
        table=stats_path("stability"),
        figure=figure("stability", "Stability"),
    log:
        f"{RESULTS}/logs/stability.log",
    benchmark:
        f"{RESULTS}/benchmarks/stability.tsv"
    localrule: True  # seconds and little memory: in the Snakemake process, never a cluster job
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("stability"),
        runtime=30,
    params:
        sigma1=config["stats"]["stability_sigma"],
    script:
        "../workflow_scripts/stability.py"


# Where the semantics live: k-means AMI and a cross-validated linear probe of every block's ā at every σ,
# against the same images' pixels.
rule block_semantics:
    input:
        block_means=rules.block_means.output[0],
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("block_semantics"),
    output:
        table=stats_path("block_semantics"),
        figure=figure("block_semantics", "Semantics", "Where the semantics live"),
    log:
        f"{RESULTS}/logs/block_semantics.log",
    benchmark:
        f"{RESULTS}/benchmarks/block_semantics.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=analysis_mem_mb("block_semantics"),
        runtime=lambda wildcards: resources.block_semantics_minutes(config, label_count()),
    params:
        max_images=config["stats"]["block_means_images"],
        k=config["stats"]["block_semantics_k"],
        sigmas=config["stats"]["block_semantics_sigmas"] or config["phi"]["sigmas"],
        ks=CLUSTER["ks"],
        normalize=CLUSTER["normalize"],
        n_init=CLUSTER["n_init"],
        max_iter=CLUSTER["max_iter"],
        tol=CLUSTER["tol"],
        seed=CLUSTER["seed"],
        probe_max_iter=CLUSTER["probe_max_iter"],
    script:
        "../workflow_scripts/block_semantics.py"


rule selectivity:
    input:
        phi=phi_files,
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("selectivity"),
    output:
        table=stats_path("channels"),
        summary=f"{RESULTS}/stats/channels.json",
        histogram=figure("channel_pr", "Selectivity"),
        montage=figure("channel_montage", "Selectivity"),
    log:
        f"{RESULTS}/logs/selectivity.log",
    benchmark:
        f"{RESULTS}/benchmarks/selectivity.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("selectivity"),
        runtime=60,
    params:
        sigma=config["stats"]["sigma"],
        active_fraction=config["stats"]["active_fraction"],
        montage_channels=config["stats"]["montage_channels"],
        montage_images=config["stats"]["montage_images"],
        rule=config["stats"]["selective_rule"],
        alpha=config["stats"]["bimodality_alpha"],
        resamples=config["findings"]["resamples"],
        confidence=config["findings"]["confidence"],
        seed=config["findings"]["seed"],
    script:
        "../workflow_scripts/selectivity.py"


rule subspaces:
    input:
        phi=phi_files,
        channels=rules.selectivity.output.table,
        code=script_code("subspaces"),
    output:
        groups=stats_path("subspace_groups"),
        pairs=stats_path("subspace_pairs"),
        heldout=stats_path("subspace_heldout"),
        figure=figure("subspaces", "Subspaces"),
    log:
        f"{RESULTS}/logs/subspaces.log",
    benchmark:
        f"{RESULTS}/benchmarks/subspaces.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("subspaces"),
        runtime=60,
    params:
        sigma=config["stats"]["sigma"],
        active_fraction=config["stats"]["active_fraction"],
        min_group_size=config["stats"]["min_group_size"],
        energy=config["stats"]["energy"],
        seed=config["phi"]["seed"],
    script:
        "../workflow_scripts/subspaces.py"


rule factors:
    input:
        phi=phi_files,
        manifest=rules.shard.output.manifest,
        code=script_code("factors"),
    output:
        table=stats_path("factor_mutual_information"),
        figure=figure("factors", "Selectivity"),
    log:
        f"{RESULTS}/logs/factors.log",
    benchmark:
        f"{RESULTS}/benchmarks/factors.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("factors"),
        runtime=60,
    params:
        sigma=config["stats"]["sigma"],
        seed=config["phi"]["seed"],
    script:
        "../workflow_scripts/factors.py"
