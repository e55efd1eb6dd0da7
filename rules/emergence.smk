# Does the representation emerge from learning to denoise? At each snapshot training kept (step 0: the
# untrained network), φ of the clustered images (phi_snapshot; the last step's is φ itself), its
# sparsity, its k-means and probe scores, and the denoiser's test PSNR; then one table and one figure
# against the pixels' scores. Adding a step to emergence.steps runs only that step's jobs.


def snapshot_phi_files(step):
    """φ files of the clustered images under the weights of training step `step`: the trained network's φ
    at the last step, the snapshot's otherwise."""
    return clustered_phi_files("phi" if step == final_step() else f"phi_snapshots/step-{step:06d}")


def emergence_outputs(wildcards):
    """The emergence table and figure; none with model.pretrained (no training to follow) or emergence.steps []."""
    return rules.emergence.output if emergence_tables(wildcards) else []


def emergence_tables(wildcards):
    steps = semcore_config.emergence_steps(config, training_images())
    return expand(f"{RESULTS}/emergence/step-{{step:06d}}.parquet", step=steps)


rule emergence_step:
    input:
        features=lambda wildcards: snapshot_phi_files(int(wildcards.step)),
        snapshots=rules.train.output.snapshots,
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("emergence_step"),
    output:
        f"{RESULTS}/emergence/step-{{step}}.parquet",
    wildcard_constraints:
        step=r"\d+",
    params:
        step=lambda wildcards: int(wildcards.step),
        snapshot=lambda wildcards: semcore_config.snapshot_name(int(wildcards.step)),
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
    log:
        f"{RESULTS}/logs/emergence/step-{{step}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/emergence/step-{{step}}.tsv"
    threads: 2
    resources:
        mem_mb=analysis_mem_mb("emergence_step"),
        runtime=120,
        gpu=1,
    conda:
        "../envs/torch.yaml"
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
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/emergence.py"
