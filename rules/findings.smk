# What holds on this run: each of the paper's claims read off the tables above, next to its baseline, with
# bootstrap intervals and a verdict (semcore.findings), as a table, a Markdown section and a report page.

# The representations the semantic claims compare, at the first clustered σ and the largest k.
FINDINGS_SIGMA, FINDINGS_K = CLUSTER["sigmas"][0], max(CLUSTER["ks"])
FINDINGS_FEATURES = {kind: f"{kind}-s{FINDINGS_SIGMA:g}" for kind in ("phi", "untrained")} | {"pixels": "pixels"}


rule findings:
    input:
        block_pr=rules.sparsity.output.table,
        stability=rules.stability.output.table,
        channels=rules.selectivity.output.summary,
        heldout=rules.subspaces.output.heldout,
        assignments=[
            expand(rules.kmeans.output.assignments, features=features, k=FINDINGS_K)[0]
            for features in FINDINGS_FEATURES.values()
        ],
        predictions=[
            expand(rules.probe.output.predictions, features=features)[0] for features in FINDINGS_FEATURES.values()
        ],
        agreement=gist_agreement,
        gist_accuracy=gist_accuracy,
        code=script_code("findings"),
    output:
        table=f"{RESULTS}/findings.parquet",
        markdown=f"{RESULTS}/findings.md",
        html=report(
            f"{RESULTS}/findings.html",
            caption="../report/findings.rst",
            category=report_category("Findings"),
            subcategory=report_subcategory(),
        ),
    log:
        f"{RESULTS}/logs/findings.log",
    benchmark:
        f"{RESULTS}/benchmarks/findings.tsv"
    localrule: True  # seconds and little memory: in the Snakemake process, never a cluster job
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        name=config["name"],
        representations=list(FINDINGS_FEATURES),
        sigma=FINDINGS_SIGMA,
        k=FINDINGS_K,
        stability_sigma=config["stats"]["stability_sigma"],
        resamples=config["findings"]["resamples"],
        confidence=config["findings"]["confidence"],
        seed=config["findings"]["seed"],
    script:
        "../workflow_scripts/findings.py"
