# Is Euclidean distance in φ space semantic? k-means clusters and nearest neighbours of φ, and how well
# clusters and a linear probe recover labels and scene factors, each against two baselines computed the
# same way: raw pixels, and φ of the untrained network (same architecture, same seed).

CLUSTER = config["cluster"]
FEATURE_SETS = feature_set_names(CLUSTER["sigmas"])


def feature_files(wildcards):
    """φ files of the trained or untrained network, or the shards themselves for pixels: of the shards
    that hold the first cluster.max_images images (all shards when null), so only those get untrained φ;
    φ files are whole jobs' (phi.shards_per_job shards), those that start among these shards."""
    kind, _ = parse_feature_set(wildcards.features)
    shards = shard_names()
    if CLUSTER["max_images"]:
        shards = shards[: math.ceil(CLUSTER["max_images"] / config["data"]["samples_per_shard"])]
    if kind == "pixels":
        return expand(f"{RESULTS}/shards/{{shard}}.tar", shard=shards)
    folder = {"phi": "phi", "untrained": "phi_untrained"}[kind]
    first_shards = set(shards)
    chunks = [chunk for chunk in phi_chunks() if chunk.rsplit("-", 1)[0] in first_shards]
    return expand(f"{RESULTS}/{folder}/{{chunk}}.parquet", chunk=chunks)


rule untrained_model:
    input:
        code=script_code("untrained_model"),
    output:
        model=f"{RESULTS}/model/untrained.pt",
    params:
        model=semcore_config.architecture(config),
        in_channels=config["data"]["channels"],
        seed=config["train"]["seed"],
    log:
        f"{RESULTS}/logs/untrained_model.log",
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("untrained_model"),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/untrained_model.py"


use rule phi as phi_untrained with:
    input:
        shards=chunk_shards,
        model=rules.untrained_model.output.model,
        code=script_code("phi"),
    output:
        f"{RESULTS}/phi_untrained/{{chunk}}.parquet",
    params:
        sigmas=CLUSTER["sigmas"],
    log:
        f"{RESULTS}/logs/phi_untrained/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phi_untrained/{{chunk}}.tsv"
    resources:
        mem_mb=4000,
        runtime=phi_runtime(CLUSTER["sigmas"]),
        gpu=1,


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
            category="Clusters",
            subcategory="{features}",
        ),
    wildcard_constraints:
        features="|".join(FEATURE_SETS).replace(".", r"\."),
        k=r"\d+",
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
    log:
        f"{RESULTS}/logs/kmeans/{{features}}-k{{k}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/kmeans/{{features}}-k{{k}}.tsv"
    threads: 4
    resources:
        mem_mb=analysis_mem_mb("kmeans"),
        runtime=120,
        gpu=1,
    conda:
        "../envs/torch.yaml"
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
        figure=figure("neighbours", "Clusters"),
    params:
        max_images=CLUSTER["max_images"],
        sigmas=CLUSTER["sigmas"],
        queries=CLUSTER["queries"],
        neighbours=CLUSTER["neighbours"],
    log:
        f"{RESULTS}/logs/neighbours.log",
    benchmark:
        f"{RESULTS}/benchmarks/neighbours.tsv"
    threads: 2
    resources:
        mem_mb=analysis_mem_mb("neighbours"),
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/neighbours.py"


rule probe:
    input:
        features=feature_files,
        manifest=rules.shard.output.manifest,
        code=script_code("probe"),
    output:
        f"{RESULTS}/clusters/{{features}}/probe.parquet",
    wildcard_constraints:
        features="|".join(FEATURE_SETS).replace(".", r"\."),
    params:
        max_images=CLUSTER["max_images"],
        max_iter=CLUSTER["probe_max_iter"],
        seed=CLUSTER["seed"],
    log:
        f"{RESULTS}/logs/probe/{{features}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/probe/{{features}}.tsv"
    threads: 2
    resources:
        mem_mb=analysis_mem_mb("probe"),
        runtime=120,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/probe.py"


rule semantic_scores:
    input:
        assignments=expand(rules.kmeans.output.assignments, features=FEATURE_SETS, k=CLUSTER["ks"]),
        probes=expand(rules.probe.output[0], features=FEATURE_SETS),
        manifest=rules.shard.output.manifest,
        code=script_code("semantic_scores"),
    output:
        table=f"{RESULTS}/clusters/semantic_scores.parquet",
        figure=figure("semantic_scores", "Clusters"),
    log:
        f"{RESULTS}/logs/semantic_scores.log",
    benchmark:
        f"{RESULTS}/benchmarks/semantic_scores.tsv"
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("semantic_scores"),
        runtime=30,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/semantic_scores.py"
