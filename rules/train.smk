# A blind UNet_flex denoiser trained on the train shards. Its run directory (options.json, log.jsonl,
# checkpoint.pt) is not a declared output, so a killed job's checkpoint survives and the rerun resumes.
# It trains with one torch DDP process per GPU of the job: `gpu`, raised in a cluster profile
# (set-resources: train: gpu: 4); threads and memory grow with it. train.batch_size stays the global
# batch; train.processes, when set, fixes the process count instead (e.g. 2 gloo processes on a CPU).
# The weights are kept at step 0 (the untrained network: the baseline), every train.snapshot_every steps
# and at the end, in model/snapshots/: the emergence analysis reads them.
# With model.pretrained, `train` imports that network instead (this package's format or the authors').


rule train:
    input:
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        pretrained=pretrained_files,
        code=script_code("train"),
    output:
        model=f"{RESULTS}/model/model.pt",
        snapshots=directory(f"{RESULTS}/model/snapshots"),
        curve=report(
            f"{RESULTS}/figures/training_curve.png",
            caption="../report/training_curve.rst",
            category=report_category("Training"),
            subcategory=report_subcategory(),
        ),
    log:
        f"{RESULTS}/logs/train.log",
    benchmark:
        f"{RESULTS}/benchmarks/train.tsv"
    priority: 50  # the critical path: before the jobs that do not need the network (pixels' k-means, …)
    conda:
        "../envs/torch.yaml"
    threads: 8 * max(1, train_gpus())  # per process: itself and its loader's workers
    resources:
        mem_mb=4000 + 8000 * max(1, train_gpus()),  # per process: the model, its batches, its loader's workers
        runtime=24 * 60,
        gpu=1,
    params:
        model=settings.architecture(config),
        pretrained=config["model"]["pretrained"],
        train=config["train"],
        in_channels=config["data"]["channels"],
        device=config["device"],
        precision=config["precision"],
        run_dir=lambda wildcards, output: str(Path(output.model).parent),  # options, log.jsonl, checkpoint
    script:
        "../workflow_scripts/train.py"
