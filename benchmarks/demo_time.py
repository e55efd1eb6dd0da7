"""Where a run's wall time went, per rule, from Snakemake's own log: each job's start ("localrule X:" or
"rule X:", then its jobid) and end ("Finished jobid: N") timestamps. Prints per rule the jobs, the sum of
their wall times and the share of the run; and the run's wall time (first start to last end).
Usage: python benchmarks/demo_time.py [.snakemake/log/<run>.snakemake.log …]  (default: the latest log of a
run that ran jobs, not of a dry run or a --report)
"""

import re
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

STAMP = r"^\[(\w{3} \w{3} +\d+ [\d:]{8} \d{4})\]\n"
START = re.compile(STAMP + r"(?:local)?(?:rule|checkpoint) (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", re.M)
END = re.compile(STAMP + r"Finished jobid: (\d+) \(Rule: (\w+)\)$", re.M)


def parse(text: str) -> pd.DataFrame:
    when = lambda stamp: datetime.strptime(" ".join(stamp.split()), "%a %b %d %H:%M:%S %Y")
    starts = {jobid: (rule, when(stamp)) for stamp, rule, jobid in START.findall(text)}
    rows = [dict(rule=rule, jobid=jobid, start=starts[jobid][1], end=when(stamp))
            for stamp, jobid, rule in END.findall(text) if jobid in starts]
    return pd.DataFrame(rows).assign(seconds=lambda t: (t.end - t.start).dt.total_seconds())


def latest_run() -> Path:
    """The newest Snakemake log in which a job finished."""
    logs = sorted(Path(".snakemake/log").glob("*.snakemake.log"), reverse=True)
    return next(path for path in logs if END.search(path.read_text()))


def main() -> None:
    logs = [Path(p) for p in sys.argv[1:]] or [latest_run()]
    jobs = pd.concat([parse(p.read_text()) for p in logs], ignore_index=True)
    wall = (jobs.end.max() - jobs.start.min()).total_seconds()
    per_rule = jobs.groupby("rule").agg(jobs=("jobid", "size"), seconds=("seconds", "sum")).sort_values("seconds", ascending=False)
    per_rule["share of job time"] = (per_rule.seconds / per_rule.seconds.sum()).map("{:.0%}".format)
    print(per_rule.to_string())
    print(f"\nwall time {wall:.0f} s ({wall / 60:.1f} min); job time {per_rule.seconds.sum():.0f} s "
          f"(jobs run side by side on the cores)")


if __name__ == "__main__":
    main()
