"""The docs' run numbers, written from the runs they come from: never typed in.

`python benchmarks/readme_runs.py --write NAME --command "…" [--time]` after a run (`make readme` after
`make demo`): keeps the run's findings (results/NAME/findings.parquet) and, with --time, where its time
went per rule (Snakemake's latest log, read as benchmarks/demo_time.py reads it: run it right after), in
benchmarks/runs/ with the date, commit and command, then rewrites the generated blocks from what is kept,
wherever they are: README.md and every docs/*.md. Without --write it checks that every generated block of
those files is what its kept run renders, and exits 1 naming each block that differs with its file
(tests/test_readme.py runs it).

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


def documents(root: Path = REPO) -> list[Path]:
    """The Markdown files that may hold generated blocks: the README and every page of docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


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
    """Copy what the docs quote of results/<name>/ (and, with `time`, the jobs of Snakemake's latest log)
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
    """The text with every block whose run is kept rendered anew (the others as they are)."""
    return BLOCK.sub(lambda m: m[1] + render(m[2], m[3]) + m[5] if kept(m[2], m[3]) else m[0], text)


def blocks(files: list[Path] | None = None) -> list[tuple[Path, str, str]]:
    """(file, kind, name) of every generated block of `files` (default: the README and docs/*.md)."""
    return [(path, m[2], m[3]) for path in (files or documents()) for m in BLOCK.finditer(path.read_text())]


def label(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def differences(files: list[Path] | Path | None = None) -> list[str]:
    """`file: kind name` of each generated block of `files` (default: the README and docs/*.md) that is not
    what its kept run renders."""
    files = [files] if isinstance(files, Path) else files or documents()
    return [f"{label(path)}: {m[2]} {m[3]}" for path in files for m in BLOCK.finditer(path.read_text())
            if not kept(m[2], m[3]) or m[4] != render(m[2], m[3])]


def write(files: list[Path] | None = None) -> list[Path]:
    """Rewrite the generated blocks of `files` (default: the README and docs/*.md) from the kept runs; the
    files changed."""
    changed = []
    for path in files or documents():
        text = path.read_text()
        if (new := regenerate(text)) != text:
            path.write_text(new)
            changed.append(path)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", metavar="NAME", help="keep the run just made (results/NAME), rewrite the docs")
    parser.add_argument("--command", default="make demo", help="how the run was made, for the docs")
    parser.add_argument("--time", action="store_true", help="keep its time per rule too: the latest log is its")
    args = parser.parse_args()
    if args.write:
        keep(args.write, args.command, args.time)
        for path in write():
            print(f"{label(path)}: generated blocks rewritten")
    if stale := differences():
        sys.exit("generated blocks differ from their kept runs:\n  " + "\n  ".join(stale) +
                 "\nrun `python benchmarks/readme_runs.py --write NAME` after the run")
    files = documents()
    print(f"every generated block ({len(blocks(files))} in {len(files)} files) is its kept run's")


if __name__ == "__main__":
    main()
