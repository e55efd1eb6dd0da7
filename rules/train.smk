# A blind UNet_flex denoiser trained on the train shards. Its run directory (options.json, log.jsonl,
# checkpoint.pt) is not a declared output, so a killed job's checkpoint survives and the rerun resumes.


rule train:
    input:
        shards=rules.shard.output.shards,
    output:
        model=f"{RESULTS}/model/model.pt",
        curve=report(
            f"{RESULTS}/figures/training_curve.png",
            caption="../report/training_curve.rst",
            category="Training",
        ),
    params:
        model=config["model"],
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
