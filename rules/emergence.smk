# Does the representation emerge from learning to denoise? At each snapshot training kept (step 0: the
# untrained network), φ of the clustered images (phi_snapshot; the last step's is φ itself), its
# sparsity, its k-means and probe scores, and the denoiser's test PSNR; then one table and one figure
# against the pixels' scores. Adding a step to emergence.steps runs only that step's jobs.


rule emergence_step:
    input:
        features=lambda wildcards: snapshot_phi_files(int(wildcards.step)),
        snapshots=rules.train.output.snapshots,
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("emergence_step"),
    output:
        f"{RESULTS}/emergence/step-{{step}}.parquet",
    log:
        f"{RESULTS}/logs/emergence/step-{{step}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/emergence/step-{{step}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=analysis_mem_mb("emergence_step"),
        runtime=120,
        gpu=1,
    params:
        step=lambda wildcards: int(wildcards.step),
        snapshot=lambda wildcards: names.snapshot_name(int(wildcards.step)),
        sigmas=CLUSTER["sigmas"],
        max_images=CLUSTER["max_images"],
        ks=CLUSTER["ks"],
        normalize=CLUSTER["normalize"],
        kmeans={key: CLUSTER[key] for key in ("n_init", "max_iter", "tol")},
        probe_max_iter=CLUSTER["probe_max_iter"],
        seed=CLUSTER["seed"],
        eval_sigmas=config["train"]["eval_sigmas"],
        eval_images=config["train"]["eval_images"],
        device=config["device"],
    script:
        "../workflow_scripts/emergence_step.py"


rule emergence:
    input:
        steps=emergence_tables,
        semantic_scores=rules.semantic_scores.output.table,
        code=script_code("emergence"),
    output:
        table=f"{RESULTS}/emergence/emergence.parquet",
        figure=figure("emergence", "Emergence"),
    log:
        f"{RESULTS}/logs/emergence.log",
    localrule: True  # seconds and little memory: in the Snakemake process, never a cluster job
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow_scripts/emergence.py"
