# φ(x_σ) = E_z[ā_mid(x + σz)] for every image, one job per phi.shards_per_job consecutive shards of a
# split (parallel on a cluster); the noise-averaged means of every block on a subset of test images, the
# input of per-block analyses; and φ of the weights training kept at earlier steps (step 0: the untrained
# network), on the clustered images at cluster.sigmas: the baseline and the emergence over training.

# Seconds of GPU per forward pass of one 64×64 image through the paper's encoder and middle block, with a
# ~3× margin (a 1,280-image shard at 20 σ × 20 draws, ~490k passes, is ~6–15 s of work): sizes φ's runtime.
PHI_SECONDS_PER_FORWARD = 1e-4


def shard_names():
    """The shards `shard` wrote: known once that checkpoint has run."""
    shard_dir = checkpoints.shard.get().output.shards
    return sorted(p.stem for p in Path(shard_dir).glob("*.tar"))


def phi_chunks():
    """φ's jobs: consecutive shards of one split, phi.shards_per_job at a time, each named by its first and
    last shard (train-000000-000007 holds train-000000.tar … train-000007.tar)."""
    size = config["phi"]["shards_per_job"]
    indices = {}
    for name in shard_names():
        split, index = name.rsplit("-", 1)
        indices.setdefault(split, []).append(index)
    return sorted(f"{split}-{found[i]}-{found[min(i + size, len(found)) - 1]}"
                  for split, found in indices.items() for i in range(0, len(found), size))


def chunk_shards(wildcards):
    split, first, last = wildcards.chunk.rsplit("-", 2)
    return [f"{RESULTS}/shards/{split}-{i:06d}.tar" for i in range(int(first), int(last) + 1)]


def phi_runtime(sigmas):
    """Minutes for a φ job at these σ: its forward passes (images × draws, one draw at σ = 0) on a GPU,
    scaled by image area; at least 10 (start-up, reading the shards)."""
    def minutes(wildcards):
        images = len(chunk_shards(wildcards)) * config["data"]["samples_per_shard"]
        forwards = images * sum(1 if sigma == 0 else config["phi"]["n_noise"] for sigma in sigmas)
        area = (config["data"]["size"] / 64) ** 2
        return max(10, math.ceil(forwards * area * PHI_SECONDS_PER_FORWARD / 60))

    return minutes


def phi_files(wildcards):
    return expand(f"{RESULTS}/phi/{{chunk}}.parquet", chunk=phi_chunks())


def test_shards(wildcards):
    return expand(f"{RESULTS}/shards/{{shard}}.tar", shard=[s for s in shard_names() if s.startswith("test-")])


rule phi:
    input:
        shards=chunk_shards,
        model=rules.train.output.model,
        code=script_code("phi"),
    output:
        f"{RESULTS}/phi/{{chunk}}.parquet",
    wildcard_constraints:
        chunk=r"(train|test)-\d{6}-\d{6}",
    params:
        sigmas=config["phi"]["sigmas"],
        n_noise=config["phi"]["n_noise"],
        seed=config["phi"]["seed"],
        batch_images=config["phi"]["batch_images"],
        all_blocks=False,
        snapshot=None,
        device=config["device"],
        precision=config["precision"],
    log:
        f"{RESULTS}/logs/phi/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phi/{{chunk}}.tsv"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=phi_runtime(config["phi"]["sigmas"]),
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
        snapshot=None,
        device=config["device"],
        precision=config["precision"],
    log:
        f"{RESULTS}/logs/block_means.log",
    benchmark:
        f"{RESULTS}/benchmarks/block_means.tsv"
    threads: 4
    resources:
        mem_mb=analysis_mem_mb("block_means"),
        runtime=60,
        gpu=1,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/phi.py"


use rule phi as phi_snapshot with:
    input:
        shards=chunk_shards,
        model=rules.train.output.snapshots,
        code=script_code("phi"),
    output:
        f"{RESULTS}/phi_snapshots/step-{{step}}/{{chunk}}.parquet",
    wildcard_constraints:
        step=r"\d+",
        chunk=r"(train|test)-\d{6}-\d{6}",
    params:
        sigmas=config["cluster"]["sigmas"],
        snapshot=lambda wildcards: semcore_config.snapshot_name(int(wildcards.step)),
    log:
        f"{RESULTS}/logs/phi_snapshots/step-{{step}}/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phi_snapshots/step-{{step}}/{{chunk}}.tsv"
    resources:
        mem_mb=4000,
        runtime=phi_runtime(config["cluster"]["sigmas"]),
        gpu=1,
