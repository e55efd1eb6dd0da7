"""Studies: several runs in one DAG (rules/study.smk), their configs, what a change replans, and the
study's tables read back against the runs' own."""
import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from semcore.plan.checks import validated
from semcore.plan.schema import ConfigError
from semcore.plan.study import ANALYSES, merged, study_runs

from conftest import REPO, TINY_CONFIG, planned_jobs, snakemake

STUDY_RULES = {"compare", "study_findings", "study_explorer", "study"}


def study_file(tmp_path, runs, base=TINY_CONFIG) -> dict:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    return {"study": {"name": "tiny-study", "base": str(tmp_path / "base.yaml"), "runs": runs}}


def test_runs_are_the_base_config_with_their_overrides_each_validated_and_named(tmp_path):
    runs = study_runs(study_file(tmp_path, [{"name": "a"}, {"name": "b-deep", "set": {"model": {"mid_convs": 1}}}]))
    assert [run.name for run in runs] == ["a", "b-deep"] and [run.module for run in runs] == ["a", "b_deep"]
    assert runs[0].config["name"] == "a" and runs[0].config["model"]["mid_convs"] == 2
    assert runs[1].config["model"]["mid_convs"] == 1 and runs[1].config["model"]["channels"] == [8, 16, 32]
    assert runs[1].config["train"]["lr"] == runs[0].config["train"]["lr"]  # the defaults filled in, as for a run
    assert merged({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}


@pytest.mark.parametrize("runs, message", [
    ([{"name": "a"}, {"name": "b", "set": {"model": {"mid_convs": 0}}}], r"(?s)study.runs\[1\] \(b: .*model.mid_convs: must be an integer ≥ 1"),
    ([{"name": "a"}, {"name": "a"}], r"study.runs: run names must be unique"),
    ([{"name": "a-b"}, {"name": "a_b"}], r"differ only in - and _"),
    ([{"name": "a", "config": "missing.yaml"}], r"study.runs\[0\].config: cannot read missing.yaml"),
    ([{"name": "a", "sets": {}}], r"study.runs\[0\]: unknown key 'sets' \(did you mean 'set'\?\)"),
])
def test_a_bad_study_is_refused_naming_the_run_and_the_key(tmp_path, runs, message):
    with pytest.raises(ConfigError, match=message):
        study_runs(study_file(tmp_path, runs))


def test_the_shipped_studies_are_valid(monkeypatch):
    monkeypatch.chdir(REPO)  # a study's config paths are relative to the working directory
    demo = study_runs(yaml.safe_load((REPO / "configs/study-demo.yaml").read_text()))
    assert [run.config["data"]["source"] for run in demo] == ["synthetic", "synthetic", "mixture"]
    assert demo[0].config == validated(yaml.safe_load((REPO / "config.yaml").read_text()))  # the demo itself
    with pytest.raises(ConfigError, match=r"study.runs\[0\] \(imagenet64: .*data.imagenet64.paths: not found"):
        study_runs(yaml.safe_load((REPO / "configs/study-imagenet.yaml").read_text()))  # paths to fill in


def test_a_study_of_a_finished_run_gathers_it_and_a_new_run_or_a_change_plans_only_its_own_jobs(finished_run):
    """The finished tiny run, loaded by a study as a module, is up to date: only the study's gathers run,
    and its tables are the run's. Adding a run plans that run's jobs; changing one run's key, its dependents."""
    def write_study(runs):
        (finished_run / "study.yaml").write_text(yaml.safe_dump({"study": {"name": "tiny-study", "runs": runs}}))

    write_study([{"name": "tiny"}])
    study = ("--configfile", str(finished_run / "study.yaml"))
    assert planned_jobs(finished_run, *study) == {"compare": len(ANALYSES)} | dict.fromkeys(STUDY_RULES - {"compare"}, 1)
    snakemake(finished_run, *study)
    for analysis, (path, _) in ANALYSES.items():
        table = pd.read_parquet(finished_run / f"results/tiny-study/{analysis}.parquet")
        run_table = pd.read_parquet(finished_run / "results/tiny" / path)
        assert list(table.columns) == ["run", *run_table.columns] and set(table.run) == {"tiny"}, analysis
        pd.testing.assert_frame_equal(table.drop(columns="run"), run_table, check_dtype=False, obj=analysis)
        assert (finished_run / f"results/tiny-study/figures/{analysis}.png").stat().st_size > 10_000
    assert "holds" in (finished_run / "results/tiny-study/findings.html").read_text() or "undecided" in (
        finished_run / "results/tiny-study/findings.html").read_text()
    # The study's explorer holds the run's bundle as the run's own page does.
    explorer = (finished_run / "results/tiny-study/explorer.html").read_text()
    assert '"name":"tiny"' in explorer and "φ explorer: tiny-study" in explorer

    write_study([{"name": "tiny"}, {"name": "tiny-shallow", "set": {"model": {"mid_convs": 1}}}])
    added = planned_jobs(finished_run, *study)
    assert {rule for rule in added if not rule.startswith("tiny_shallow_")} == STUDY_RULES, added
    assert added["tiny_shallow_shard"] == 1 and added["tiny_shallow_train"] == 1

    write_study([{"name": "tiny", "set": {"cluster": {"ks": [5]}}}])
    changed = planned_jobs(finished_run, *study)
    assert {rule for rule in changed if not rule.startswith("tiny_")} == STUDY_RULES, changed
    assert not {"tiny_shard", "tiny_train", "tiny_phi", "tiny_block_means"} & set(changed), changed
    assert changed["tiny_kmeans"] == 3 and changed["tiny_run_config"] == 1


def test_the_imagenet_study_sends_both_runs_jobs_to_slurm_with_the_profiles_settings():
    """configs/study-imagenet.yaml over stand-in shards, with profiles/slurm: one DAG holds both runs' jobs;
    the trained run's train gets the profile's 4 GPUs as a run alone does, the imported model's its import."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_study.py"), "--sbatch", "--images", "100000"], capture_output=True,
                         text=True, cwd=REPO / "benchmarks", timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    counts = dict(re.findall(r"(\S+) (\d+)(?:,|$)", out.stdout.splitlines()[1]))
    assert int(counts["imagenet64"]) > 30 and int(counts["imagenet64-authors"]) > 30, out.stdout
    lines = dict(re.findall(r"^(\w+):\n\s+(sbatch .*)$", out.stdout, re.M))
    for flag in ("-p gpu", "--gpus=a100:4", "--nodes=1", "--cpus-per-gpu=8"):
        assert flag in lines["imagenet64_train"], (flag, lines["imagenet64_train"])
    for run in ("imagenet64", "imagenet64_authors"):
        assert "-p gpu" in lines[f"{run}_phi"] and "--gpus=a100:1" in lines[f"{run}_phi"], lines[f"{run}_phi"]
        assert f"rule_{run}_phi" in lines[f"{run}_phi"]
