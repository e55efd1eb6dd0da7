# φ(x_σ) = E_z[ā_mid(x + σz)] for every image, one job per shard (parallel on a cluster); and the
# noise-averaged means of every block on a subset of test images, the input of per-block analyses.


def shard_names():
    """The shards `shard` wrote: known once that checkpoint has run."""
    shard_dir = checkpoints.shard.get().output.shards
    return sorted(p.stem for p in Path(shard_dir).glob("*.tar"))


def phi_files(wildcards):
    return expand(f"{RESULTS}/phi/{{shard}}.parquet", shard=shard_names())


def test_shards(wildcards):
    return expand(f"{RESULTS}/shards/{{shard}}.tar", shard=[s for s in shard_names() if s.startswith("test-")])


rule phi:
    input:
        shards=f"{RESULTS}/shards/{{shard}}.tar",
        model=rules.train.output.model,
        code=script_code("phi"),
    output:
        f"{RESULTS}/phi/{{shard}}.parquet",
    wildcard_constraints:
        shard=r"(train|test)-\d{6}",
    params:
        sigmas=config["phi"]["sigmas"],
        n_noise=config["phi"]["n_noise"],
        seed=config["phi"]["seed"],
        batch_images=config["phi"]["batch_images"],
        max_images=None,
        all_blocks=False,
        device=config["device"],
    log:
        f"{RESULTS}/logs/phi/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phi/{{shard}}.tsv"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/phi.py"


rule block_means:
    input:
        shards=test_shards,
        model=rules.train.output.model,
        code=script_code("phi"),
    output:
        f"{RESULTS}/block_means.parquet",
    params:
        sigmas=sorted(set(config["phi"]["sigmas"]) | {config["stats"]["stability_sigma"]}),
        n_noise=config["phi"]["n_noise"],
        seed=config["phi"]["seed"],
        batch_images=config["phi"]["batch_images"],
        max_images=config["stats"]["block_means_images"],
        all_blocks=True,
        device=config["device"],
    log:
        f"{RESULTS}/logs/block_means.log",
    benchmark:
        f"{RESULTS}/benchmarks/block_means.tsv"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/phi.py"
