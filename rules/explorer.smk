# Looking at φ: every mapped image's exact nearest neighbours in φ, in pixels and in the untrained network's
# φ, a 2-D map of φ (PCA and t-SNE), and one offline page that shows them with the run's clusters, channels
# and self-guided samples (semcore.explorer).


rule neighbour_graph:
    input:
        features=feature_files,
        code=script_code("neighbour_graph"),
    output:
        f"{RESULTS}/explorer/neighbours/{{features}}.parquet",
    log:
        f"{RESULTS}/logs/neighbour_graph/{{features}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/neighbour_graph/{{features}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=analysis_mem_mb("neighbour_graph"),
        runtime=60,
        gpu=1,
    params:
        max_images=sizes.explorer_images(config),
        neighbours=EXPLORER["neighbours"],
        device=config["device"],
    script:
        "../workflow_scripts/neighbour_graph.py"


rule embedding:
    input:
        phi=lambda wildcards: clustered_phi_files("phi"),
        code=script_code("embedding"),
    output:
        f"{RESULTS}/explorer/embedding.parquet",
    log:
        f"{RESULTS}/logs/embedding.log",
    benchmark:
        f"{RESULTS}/benchmarks/embedding.tsv"
    conda:
        "../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=analysis_mem_mb("embedding"),
        runtime=60,
    params:
        sigma=EXPLORER_SIGMA,
        max_images=sizes.explorer_images(config),
        perplexity=EXPLORER["perplexity"],
        seed=EXPLORER["seed"],
    script:
        "../workflow_scripts/embedding.py"


rule explorer_data:
    input:
        phi=lambda wildcards: clustered_phi_files("phi"),
        embedding=rules.embedding.output[0],
        neighbours=expand(rules.neighbour_graph.output[0], features=EXPLORER_FEATURES),
        assignments=expand(rules.kmeans.output.assignments, features=EXPLORER_FEATURES[0], k=CLUSTER["ks"]),
        channels=stats_path("channels"),
        samples=rules.sample_summary.output.table,
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("explorer_data"),
    output:
        f"{RESULTS}/explorer/bundle.json",
    log:
        f"{RESULTS}/logs/explorer_data.log",
    benchmark:
        f"{RESULTS}/benchmarks/explorer_data.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("explorer_data"),
        runtime=60,
    params:
        name=config["name"],
        sigma=EXPLORER_SIGMA,
        max_images=sizes.explorer_images(config),
        ks=CLUSTER["ks"],
        active_fraction=config["stats"]["active_fraction"],
        thumbnail=EXPLORER["thumbnail"],
        quality=EXPLORER["quality"],
        cluster_members=EXPLORER["cluster_members"],
        channel_images=EXPLORER["channel_images"],
    script:
        "../workflow_scripts/explorer_data.py"


rule explorer:
    input:
        bundles=[rules.explorer_data.output[0]],
        code=script_code("explorer"),
    output:
        report(
            f"{RESULTS}/explorer.html",
            caption="../report/explorer.rst",
            category=report_category("Explorer"),
            subcategory=report_subcategory(),
        ),
    log:
        f"{RESULTS}/logs/explorer.log",
    localrule: True  # seconds: in the Snakemake process, never a cluster job
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("explorer"),
        runtime=10,
    params:
        title=f"φ explorer: {config['name']}",
    script:
        "../workflow_scripts/explorer.py"
