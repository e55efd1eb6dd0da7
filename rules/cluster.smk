# Is Euclidean distance in φ space semantic? k-means clusters and nearest neighbours of φ, and how well
# clusters and a linear probe recover labels and scene factors, each against two baselines computed the
# same way: raw pixels, and φ of the untrained network (same architecture, same seed).

CLUSTER = config["cluster"]
FEATURE_SETS = feature_set_names(CLUSTER["sigmas"])


def feature_files(wildcards):
    """φ files of the trained or untrained network, or the shards themselves for pixels: of the shards
    that hold the first cluster.max_images images (all shards when null), so only those get untrained φ."""
    kind, _ = parse_feature_set(wildcards.features)
    folder = {"phi": "phi", "untrained": "phi_untrained", "pixels": "shards"}[kind]
    suffix = "tar" if kind == "pixels" else "parquet"
    shards = shard_names()
    if CLUSTER["max_images"]:
        shards = shards[: math.ceil(CLUSTER["max_images"] / config["data"]["samples_per_shard"])]
    return expand(f"{RESULTS}/{folder}/{{shard}}.{suffix}", shard=shards)


def features_mem_mb(wildcards, input):
    """Room for the features as float32, twice: φ takes about its size on disk; pixels decode to ~10×
    their PNG size, and cluster.max_images caps how many are read."""
    data_mb = 10 * input.size_mb
    if CLUSTER["max_images"]:
        pixels_mb = CLUSTER["max_images"] * config["data"]["channels"] * config["data"]["size"] ** 2 * 4 / 2**20
        data_mb = max(input.size_mb, min(data_mb, pixels_mb))
    return int(2000 + 2 * data_mb)


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
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/untrained_model.py"


use rule phi as phi_untrained with:
    input:
        shards=f"{RESULTS}/shards/{{shard}}.tar",
        model=rules.untrained_model.output.model,
    output:
        f"{RESULTS}/phi_untrained/{{shard}}.parquet",
    params:
        sigmas=CLUSTER["sigmas"],
    log:
        f"{RESULTS}/logs/phi_untrained/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phi_untrained/{{shard}}.tsv"


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
        mem_mb=features_mem_mb,
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
    threads: 2
    resources:
        mem_mb=features_mem_mb,
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
    threads: 2
    resources:
        mem_mb=features_mem_mb,
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
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/semantic_scores.py"
