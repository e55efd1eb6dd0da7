# The run's config as the workflow takes it; images from the configured source → WebDataset shards, and a
# manifest accounting for every input.


rule run_config:
    input:
        code=script_code("run_config"),
    output:
        f"{RESULTS}/config.yaml",
    log:
        f"{RESULTS}/logs/run_config.log",
    localrule: True  # seconds and little memory: in the Snakemake process, never a cluster job
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        config=config,  # validated, its defaults filled in: any change rewrites this file, and reruns nothing else
    script:
        "../workflow_scripts/run_config.py"


checkpoint shard:
    input:
        source_files,
        code=script_code("shard"),
    output:
        shards=directory(f"{RESULTS}/shards"),
        manifest=f"{RESULTS}/manifest.parquet",
    log:
        f"{RESULTS}/logs/shard.log",
    benchmark:
        f"{RESULTS}/benchmarks/shard.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        source=SOURCE,
        options=source_options(),
        size=config["data"]["size"],
        channels=config["data"]["channels"],
        min_size=settings.min_size(config["data"]),
        test_fraction=config["data"]["test_fraction"],
        samples_per_shard=config["data"]["samples_per_shard"],
        seed=config["data"]["seed"],
    script:
        "../workflow_scripts/shard.py"


rule data_overview:
    input:
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("data_overview"),
    output:
        figure=figure("data", "Data"),
    log:
        f"{RESULTS}/logs/data_overview.log",
    localrule: True  # seconds and little memory: in the Snakemake process, never a cluster job
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        labels=8,  # the first labels shown, each by its first images
        examples=6,
    script:
        "../workflow_scripts/data_overview.py"
