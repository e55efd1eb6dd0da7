# Is Euclidean distance in φ space semantic? k-means clusters and nearest neighbours of φ, and how well
# clusters and a linear probe recover labels and scene factors, each against two baselines computed the
# same way: raw pixels, and φ of the untrained network (training's step-0 snapshot: same architecture,
# same seed).


rule kmeans:
    input:
        features=feature_files,
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("kmeans"),
    output:
        assignments=f"{RESULTS}/clusters/{{features}}/k{{k}}/assignments.parquet",
        centroids=f"{RESULTS}/clusters/{{features}}/k{{k}}/centroids.parquet",
        montage=report(
            f"{RESULTS}/figures/clusters/{{features}}-k{{k}}.png",
            caption="../report/clusters.rst",
            category=report_category("Semantics"),
            subcategory=report_subcategory("Clusters: {features}"),
        ),
    log:
        f"{RESULTS}/logs/kmeans/{{features}}-k{{k}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/kmeans/{{features}}-k{{k}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 4
    resources:
        mem_mb=analysis_mem_mb("kmeans"),
        runtime=120,
        gpu=1,
    params:
        max_images=CLUSTER["max_images"],
        normalize=CLUSTER["normalize"],
        n_init=CLUSTER["n_init"],
        max_iter=CLUSTER["max_iter"],
        tol=CLUSTER["tol"],
        seed=CLUSTER["seed"],
        montage_clusters=CLUSTER["montage_clusters"],
        montage_members=CLUSTER["montage_members"],
        device=config["device"],
    script:
        "../workflow_scripts/kmeans.py"


rule neighbours:
    input:
        phi=phi_files,
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("neighbours"),
    output:
        table=f"{RESULTS}/clusters/neighbours.parquet",
        figure=figure("neighbours", "Semantics", "Nearest neighbours"),
    log:
        f"{RESULTS}/logs/neighbours.log",
    benchmark:
        f"{RESULTS}/benchmarks/neighbours.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=analysis_mem_mb("neighbours"),
        runtime=30,
    params:
        max_images=CLUSTER["max_images"],
        sigmas=CLUSTER["sigmas"],
        queries=CLUSTER["queries"],
        neighbours=CLUSTER["neighbours"],
    script:
        "../workflow_scripts/neighbours.py"


rule probe:
    input:
        features=feature_files,
        manifest=rules.shard.output.manifest,
        code=script_code("probe"),
    output:
        accuracy=f"{RESULTS}/clusters/{{features}}/probe.parquet",
        predictions=f"{RESULTS}/clusters/{{features}}/probe_predictions.parquet",
    log:
        f"{RESULTS}/logs/probe/{{features}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/probe/{{features}}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=analysis_mem_mb("probe"),
        runtime=120,
    params:
        max_images=CLUSTER["max_images"],
        max_iter=CLUSTER["probe_max_iter"],
        seed=CLUSTER["seed"],
    script:
        "../workflow_scripts/probe.py"


rule semantic_scores:
    input:
        assignments=expand(rules.kmeans.output.assignments, features=FEATURE_SETS, k=CLUSTER["ks"]),
        probes=expand(rules.probe.output.accuracy, features=FEATURE_SETS),
        manifest=rules.shard.output.manifest,
        code=script_code("semantic_scores"),
    output:
        table=f"{RESULTS}/clusters/semantic_scores.parquet",
        figure=figure("semantic_scores", "Semantics", "Scores"),
        summary=report(
            f"{RESULTS}/tables/semantic_scores.html",
            caption="../report/semantic_scores_table.rst",
            category=report_category("Semantics"),
            subcategory=report_subcategory("Scores"),
        ),
    log:
        f"{RESULTS}/logs/semantic_scores.log",
    benchmark:
        f"{RESULTS}/benchmarks/semantic_scores.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("semantic_scores"),
        runtime=30,
    script:
        "../workflow_scripts/semantic_scores.py"
