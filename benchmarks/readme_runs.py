"""The README's run numbers, written from the runs they come from: never typed in.

`python benchmarks/readme_runs.py --write NAME --command "…" [--time]` after a run (`make readme` after
`make demo`): keeps the run's findings (results/NAME/findings.parquet) and, with --time, where its time
went per rule (Snakemake's latest log, read as benchmarks/demo_time.py reads it: run it right after), in
benchmarks/runs/ with the date, commit and command, then rewrites the README's generated blocks from
what is kept. Without --write it checks that every generated block of the README
is what its kept run renders, and exits 1 naming each block that differs (tests/test_readme.py runs it).

A generated block: `<!-- run: findings demo -->` or `<!-- run: time demo -->`, the rendered Markdown,
`<!-- end run -->`.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
import demo_time  # noqa: E402

from semcore import findings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "benchmarks" / "runs"
BLOCK = re.compile(r"(<!-- run: (\w+) ([\w.-]+) -->\n)(.*?)(<!-- end run -->)", re.S)


def provenance(name: str) -> str:
    kept = json.loads((RUNS / f"{name}.json").read_text())
    return f"`{kept['command']}`, {kept['date']}, commit {kept['commit']}"


def render(kind: str, name: str) -> str:
    if kind == "findings":
        table = pd.read_parquet(RUNS / f"{name}-findings.parquet")
        return findings.markdown(table, f"Findings on {name} ({provenance(name)})")
    if kind == "time":
        jobs = pd.read_csv(RUNS / f"{name}-time.csv")
        per_rule = jobs.groupby("rule").agg(jobs=("jobid", "size"), seconds=("seconds", "sum"))
        per_rule = per_rule.sort_values("seconds", ascending=False).round().astype(int)
        wall = (pd.to_datetime(jobs.end).max() - pd.to_datetime(jobs.start).min()).total_seconds()
        rows = ["| rule | jobs | seconds |", "|---|---|---|",
                *(f"| {rule} | {r.jobs} | {r.seconds} |" for rule, r in per_rule.iterrows())]
        return (f"Wall time {wall:.0f} s from the first job to the last on {name} ({provenance(name)});"
                f" job time per rule:\n\n" + "\n".join(rows) + "\n")
    raise ValueError(f"unknown generated block kind {kind!r}")


def keep(name: str, command: str, time: bool) -> None:
    """Copy what the README quotes of results/<name>/ (and, with `time`, the jobs of Snakemake's latest log)
    into benchmarks/runs/."""
    RUNS.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "results" / name / "findings.parquet", RUNS / f"{name}-findings.parquet")
    if time:
        demo_time.parse(demo_time.latest_run().read_text()).to_csv(RUNS / f"{name}-time.csv", index=False)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    (RUNS / f"{name}.json").write_text(json.dumps(dict(command=command, date=str(date.today()),
                                                       commit=commit.strip()), indent=2) + "\n")


def kept(kind: str, name: str) -> bool:
    return (RUNS / (f"{name}-findings.parquet" if kind == "findings" else f"{name}-{kind}.csv")).exists()


def regenerate(text: str) -> str:
    """The README with every block whose run is kept rendered anew (the others as they are)."""
    return BLOCK.sub(lambda m: m[1] + render(m[2], m[3]) + m[5] if kept(m[2], m[3]) else m[0], text)


def differences(readme: Path = REPO / "README.md") -> list[str]:
    """The generated blocks of the README that are not what their kept runs render."""
    return [f"{m[2]} {m[3]}" for m in BLOCK.finditer(readme.read_text())
            if not kept(m[2], m[3]) or m[4] != render(m[2], m[3])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", metavar="NAME", help="keep the run just made (results/NAME), rewrite the README")
    parser.add_argument("--command", default="make demo", help="how the run was made, for the README")
    parser.add_argument("--time", action="store_true", help="keep its time per rule too: the latest log is its")
    args = parser.parse_args()
    readme = REPO / "README.md"
    if args.write:
        keep(args.write, args.command, args.time)
        readme.write_text(regenerate(readme.read_text()))
    if stale := differences(readme):
        sys.exit(f"README.md: generated blocks differ from their kept runs: {', '.join(stale)}; "
                 f"run `python benchmarks/readme_runs.py --write NAME` after the run")
    print("README.md: every generated block is its kept run's")


if __name__ == "__main__":
    main()
