# φ(x_σ) = E_z[ā_mid(x + σz)] for every image, one job per phi.shards_per_job consecutive shards of a
# split (parallel on a cluster); the noise-averaged means of every block on a subset of test images, the
# input of per-block analyses; and φ of the weights training kept at earlier steps (step 0: the untrained
# network), on the clustered images at cluster.sigmas: the baseline and the emergence over training.


rule phi:
    input:
        shards=chunk_shards,
        model=rules.train.output.model,
        code=script_code("phi"),
    output:
        f"{RESULTS}/phi/{{chunk}}.parquet",
    log:
        f"{RESULTS}/logs/phi/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phi/{{chunk}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=phi_runtime(config["phi"]["sigmas"]),
        gpu=1,
    params:
        sigmas=config["phi"]["sigmas"],
        n_noise=config["phi"]["n_noise"],
        seed=config["phi"]["seed"],
        batch_images=config["phi"]["batch_images"],
        all_blocks=False,
        snapshot=None,
        device=config["device"],
        precision=config["precision"],
    script:
        "../workflow_scripts/phi.py"


rule block_means:
    input:
        shards=test_shards,
        model=rules.train.output.model,
        code=script_code("phi"),
    output:
        f"{RESULTS}/block_means.parquet",
    log:
        f"{RESULTS}/logs/block_means.log",
    benchmark:
        f"{RESULTS}/benchmarks/block_means.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 4
    resources:
        mem_mb=analysis_mem_mb("block_means"),
        runtime=60,
        gpu=1,
    params:
        sigmas=sorted(set(config["phi"]["sigmas"]) | {config["stats"]["stability_sigma"]}),
        n_noise=config["phi"]["n_noise"],
        seed=config["phi"]["seed"],
        batch_images=config["phi"]["batch_images"],
        max_images=config["stats"]["block_means_images"],
        all_blocks=True,
        snapshot=None,
        device=config["device"],
        precision=config["precision"],
    script:
        "../workflow_scripts/phi.py"


use rule phi as phi_snapshot with:
    input:
        shards=chunk_shards,
        model=rules.train.output.snapshots,
        code=script_code("phi"),
    output:
        f"{RESULTS}/phi_snapshots/step-{{step}}/{{chunk}}.parquet",
    log:
        f"{RESULTS}/logs/phi_snapshots/step-{{step}}/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phi_snapshots/step-{{step}}/{{chunk}}.tsv"
    resources:
        mem_mb=4000,
        runtime=phi_runtime(config["cluster"]["sigmas"]),
        gpu=1,
    params:
        sigmas=config["cluster"]["sigmas"],
        snapshot=lambda wildcards: names.snapshot_name(int(wildcards.step)),
