"""Adapter for rule `study_findings`: the study's findings as one HTML table, run × claim."""
import pandas as pd

from semcore import comparison, figures
from semcore.joblog import job_log

job_log(snakemake)
figures.html_tables(comparison.findings_summary(pd.read_parquet(snakemake.input.table)), snakemake.output[0])
