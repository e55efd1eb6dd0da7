# A study: several runs in one DAG, compared side by side. Each run is this workflow loaded as a Snakemake
# module with its own config, its rules named <run>_<rule>: it keeps its own results/<run>/, its own
# incremental DAG (changing one run's key reruns that run's dependents only) and can have its own report;
# on a cluster every run's jobs go out together. The study's rules gather the runs' tables into
# results/<study>/, one table and one figure per analysis, categorised like the runs' reports.


include: "study_common.smk"


report: "../report/study.rst"


# `module` and `use rule` spelled with a variable name: Snakemake resolves a loop's module names (the
# statements with a literal name cannot be repeated per run).
for run in RUNS:
    module_name, rule_prefix = run.module, f"{run.module}_"

    module:
        name: module_name
        snakefile:
            "../Snakefile"
        config:
            run.config

    use rule * from module_name as rule_prefix*


wildcard_constraints:
    analysis="|".join(ANALYSES),


rule compare:
    input:
        unpack(run_tables),
        code=script_code("compare"),
    output:
        table=f"{STUDY_RESULTS}/{{analysis}}.parquet",
        figure=report(
            f"{STUDY_RESULTS}/figures/{{analysis}}.png",
            caption="../report/study_compare.rst",
            category=lambda wildcards: study_category(wildcards.analysis),
            subcategory="All runs",
            labels=lambda wildcards: {"analysis": wildcards.analysis, "runs": "all"},
        ),
    log:
        f"{STUDY_RESULTS}/logs/compare/{{analysis}}.log",
    localrule: True  # seconds: in the Snakemake process, never a cluster job
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=lambda wildcards: list(run_tables(wildcards)),
    script:
        "../workflow_scripts/compare.py"


rule study_findings:
    input:
        table=f"{STUDY_RESULTS}/findings.parquet",
        code=script_code("study_findings"),
    output:
        report(
            f"{STUDY_RESULTS}/findings.html",
            caption="../report/study_findings.rst",
            category=study_category("findings"),
            subcategory="All runs",
        ),
    log:
        f"{STUDY_RESULTS}/logs/study_findings.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/study_findings.py"


# One explorer page for all the runs: switch run with the image kept (runs of the same images share its
# thumbnails), to see its neighbours in each run's φ.
rule study_explorer:
    input:
        bundles=[run_rule(run, "explorer_data").output[0] for run in RUNS],
        code=script_code("explorer"),
    output:
        report(
            f"{STUDY_RESULTS}/explorer.html",
            caption="../report/explorer_study.rst",
            category=names.report_category("Explorer"),
            subcategory="All runs",
        ),
    log:
        f"{STUDY_RESULTS}/logs/study_explorer.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, input: 1000 + 5 * input.size_mb,  # the bundles held ~4 times, as in the run's
        runtime=10,
    params:
        title=f"φ explorer: {STUDY['name']}",
    script:
        "../workflow_scripts/explorer.py"


# What the study makes: every run's outputs (its rule `all`: files and the input functions that find the
# rest), then the study's tables and figures.
RUN_OUTPUTS = [run_rule(run, "all").input for run in RUNS]
STUDY_OUTPUTS = [
    expand(rules.compare.output, analysis=ANALYSES),
    rules.study_findings.output,
    rules.study_explorer.output,
]
