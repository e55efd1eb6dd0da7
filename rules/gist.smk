# Gist, measured: a small classifier of the scene factors (or the label) trained on the train split judges
# whether self-guided samples keep their conditioner's class, against unconditional samples, real images
# of the same class and the conditioner itself; and KID on its features, against real test images.

GIST = config["gist"]


def gist_agreement(wildcards):
    """The gist scores, where there is a gist to score: scene factors, or at least two labels (once `shard`
    has run); a folder without class sub-folders has none."""
    checkpoints.shard.get()
    return rules.gist_scores.output.agreement if SOURCE == "synthetic" or label_count() >= 2 else []


def gist_mem_mb(images):
    """Torch and the network, and `images` uint8 images held with their decoding (a margin of 3×)."""
    return 1500 + math.ceil(3 * images * config["data"]["size"] ** 2 * config["data"]["channels"] / 1e6)


rule gist_classifier:
    input:
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("gist_classifier"),
    output:
        classifier=f"{RESULTS}/gist/classifier.pt",
        accuracy=f"{RESULTS}/gist/classifier_accuracy.parquet",
    params:
        epochs=GIST["epochs"],
        batch_size=GIST["batch_size"],
        lr=GIST["lr"],
        hue_bins=GIST["hue_bins"],
        width=GIST["width"],
        seed=GIST["seed"],
        max_train_images=GIST["max_train_images"],
        max_test_images=GIST["max_test_images"],
    log:
        f"{RESULTS}/logs/gist_classifier.log",
    benchmark:
        f"{RESULTS}/benchmarks/gist_classifier.tsv"
    threads: 4
    resources:
        mem_mb=gist_mem_mb(GIST["max_train_images"]),
        runtime=120,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/gist_classifier.py"


rule gist_scores:
    input:
        samples=rules.sample_summary.output.table,
        classifier=rules.gist_classifier.output.classifier,
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("gist_scores"),
    output:
        agreement=f"{RESULTS}/gist/agreement.parquet",
        quality=f"{RESULTS}/gist/quality.parquet",
        figure=report(
            f"{RESULTS}/figures/gist_agreement.png",
            caption="../report/gist_agreement.rst",
            category="Self-guided sampling",
        ),
    params:
        max_test_images=GIST["max_test_images"],
        max_real_same_class=GIST["max_real_same_class"],
        kid_subsets=GIST["kid_subsets"],
        seed=GIST["seed"],
    log:
        f"{RESULTS}/logs/gist_scores.log",
    benchmark:
        f"{RESULTS}/benchmarks/gist_scores.tsv"
    threads: 2
    resources:
        mem_mb=gist_mem_mb(GIST["max_test_images"]),
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/gist_scores.py"
