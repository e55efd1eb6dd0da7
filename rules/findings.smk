# What holds on this run: each of the paper's claims read off the tables above, next to its baseline
# (semcore.findings), as a table, a Markdown section for the README and a page of the report.


rule findings:
    input:
        block_pr=rules.sparsity.output.table,
        stability=rules.stability.output.table,
        channels=rules.selectivity.output.summary,
        groups=rules.subspaces.output.groups,
        semantic_scores=rules.semantic_scores.output.table,
        agreement=gist_agreement,
        code=script_code("findings"),
    output:
        table=f"{RESULTS}/findings.parquet",
        markdown=f"{RESULTS}/findings.md",
        html=report(f"{RESULTS}/findings.html", caption="../report/findings.rst", category=report_category("Findings")),
    log:
        f"{RESULTS}/logs/findings.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        name=config["name"],
    script:
        "../workflow_scripts/findings.py"
