# Is Euclidean distance in φ space semantic? k-means clusters and nearest neighbours of φ, and how well
# clusters and a linear probe recover labels and scene factors, each against two baselines computed the
# same way: raw pixels, and φ of the untrained network (training's step-0 snapshot: same architecture,
# same seed).

CLUSTER = config["cluster"]
FEATURE_SETS = feature_set_names(CLUSTER["sigmas"])


def clustered_chunks():
    """φ's jobs (phi.shards_per_job shards each) that start among the shards holding the first
    cluster.max_images images (all shards when null): only those get φ of the snapshots."""
    shards = shard_names()
    if CLUSTER["max_images"]:
        shards = shards[: math.ceil(CLUSTER["max_images"] / config["data"]["samples_per_shard"])]
    first_shards = set(shards)
    return shards, [chunk for chunk in phi_chunks() if chunk.rsplit("-", 1)[0] in first_shards]


def clustered_phi_files(folder):
    """The φ files in `folder` (phi, or a snapshot's under phi_snapshots) of the clustered images."""
    return expand(f"{RESULTS}/{folder}/{{chunk}}.parquet", chunk=clustered_chunks()[1])


def feature_files(wildcards):
    """φ files of the trained or untrained network (training's step 0), or the shards themselves for
    pixels, of the clustered images."""
    kind, _ = parse_feature_set(wildcards.features)
    if kind == "pixels":
        return expand(f"{RESULTS}/shards/{{shard}}.tar", shard=clustered_chunks()[0])
    return clustered_phi_files("phi" if kind == "phi" else "phi_snapshots/step-000000")


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
