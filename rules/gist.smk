# Gist, measured: a small classifier of the scene factors (or the label) trained on the train split (to
# convergence on a validation split carved from it; its test accuracy with a bootstrap interval, against
# chance) judges whether self-guided samples keep their conditioner's class, against unconditional samples,
# real images of the same class and the conditioner itself; and KID on its features, against real test
# images. Samples that failed (NaN/inf) are left out of both, and counted.


rule gist_classifier:
    input:
        shards=rules.shard.output.shards,
        manifest=rules.shard.output.manifest,
        code=script_code("gist_classifier"),
    output:
        classifier=f"{RESULTS}/gist/classifier.pt",
        accuracy=f"{RESULTS}/gist/classifier_accuracy.parquet",
    log:
        f"{RESULTS}/logs/gist_classifier.log",
    benchmark:
        f"{RESULTS}/benchmarks/gist_classifier.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 4
    resources:
        mem_mb=gist_mem_mb(GIST["max_train_images"]),
        runtime=120,
    params:
        max_steps=GIST["max_steps"],
        patience=GIST["patience"],
        eval_every=GIST["eval_every"],
        val_fraction=GIST["val_fraction"],
        batch_size=GIST["batch_size"],
        lr=GIST["lr"],
        hue_bins=GIST["hue_bins"],
        width=GIST["width"],
        seed=GIST["seed"],
        max_train_images=GIST["max_train_images"],
        max_test_images=GIST["max_test_images"],
        resamples=config["findings"]["resamples"],
        confidence=config["findings"]["confidence"],
        bootstrap_seed=config["findings"]["seed"],
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
            category=report_category("Sampling"),
            subcategory=report_subcategory(),
        ),
        summary=report(
            f"{RESULTS}/tables/gist.html",
            caption="../report/gist_table.rst",
            category=report_category("Sampling"),
            subcategory=report_subcategory(),
        ),
    log:
        f"{RESULTS}/logs/gist_scores.log",
    benchmark:
        f"{RESULTS}/benchmarks/gist_scores.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=gist_mem_mb(GIST["max_test_images"]),
        runtime=30,
    params:
        max_test_images=GIST["max_test_images"],
        max_real_same_class=GIST["max_real_same_class"],
        kid_subsets=GIST["kid_subsets"],
        seed=GIST["seed"],
    script:
        "../workflow_scripts/gist_scores.py"
