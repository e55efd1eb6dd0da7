# A blind UNet_flex denoiser trained on the train shards. Its run directory (options.json, log.jsonl,
# checkpoint.pt) is not a declared output, so a killed job's checkpoint survives and the rerun resumes.
# On CUDA it trains with one torch DDP process per GPU of the job: `gpu` below, raised by a cluster
# profile (set-resources: train: gpu: 4) or `--set-resources train:gpu=4`. train.batch_size stays the
# global batch; train.processes, when set, fixes the process count instead (gloo on a CPU).
# With model.pretrained, `train` imports that network instead (this package's format or the authors').


rule train:
    input:
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        pretrained=pretrained_files,
        code=script_code("train"),
    output:
        model=f"{RESULTS}/model/model.pt",
        curve=report(
            f"{RESULTS}/figures/training_curve.png",
            caption="../report/training_curve.rst",
            category="Training",
        ),
    params:
        model=semcore_config.architecture(config),
        pretrained=config["model"]["pretrained"],
        train=config["train"],
        in_channels=config["data"]["channels"],
        device=config["device"],
        run_dir=f"{RESULTS}/model",
    log:
        f"{RESULTS}/logs/train.log",
    benchmark:
        f"{RESULTS}/benchmarks/train.tsv"
    threads: 8
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/train.py"
