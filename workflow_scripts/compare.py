"""Adapter for rule `compare`: one analysis's tables of every run → the study's table and figure."""
from semcore import comparison, figures
from semcore.joblog import job_log
from semcore.tables import write_table

job_log(snakemake)
analysis = snakemake.wildcards.analysis
paths = {run: snakemake.input[run] for run in snakemake.params.runs}
table = comparison.gathered(paths) if paths else comparison.study_schema(analysis).empty_table().to_pandas()
write_table(table, snakemake.output.table, comparison.study_schema(analysis))
if paths:
    comparison.FIGURES[analysis](table, snakemake.output.figure)
else:
    figures.note(f"No run of this study has the {analysis} analysis.", snakemake.output.figure)
