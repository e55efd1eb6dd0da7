"""The real Snakemake workflow on tiny configs, run in temporary directories and read back."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from modulefinder import ModuleFinder
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import webdataset as wds
import yaml
from PIL import Image

from semcore import authors, cli, findings
from semcore.model import UNetConfig, UNetFlex
from semcore.plan.schema import load_schema
from semcore.train import read_log

from conftest import REPO, TINY_CONFIG, planned_jobs, snakemake, write_config


def test_outputs_open_with_standard_tools(finished_run):
    results = finished_run / "results" / "tiny"
    manifest = pd.read_parquet(results / "manifest.parquet")
    assert len(manifest) == 240 and (manifest.status == "written").all()
    keys = [s["__key__"] for s in wds.WebDataset(str(results / "shards" / "train-000000.tar"), shardshuffle=False)]
    assert keys and set(keys) <= set(manifest.key)

    saved = torch.load(results / "model" / "model.pt", weights_only=True)
    assert saved["config"]["channels"] == [8, 16, 32] and saved["config"]["in_channels"] == 3

    log = read_log(results / "model")
    final = log[(log.kind == "eval") & (log.step == 30)].set_index("sigma")
    assert final.loc[0.3, "psnr_denoised"] > final.loc[0.3, "psnr_noisy"]
    assert Image.open(results / "figures" / "training_curve.png").size[0] > 500
    options = json.loads((results / "model" / "options.json").read_text())
    assert options["train"]["steps"] == 30
    snapshots = sorted(p.name for p in (results / "model" / "snapshots").glob("*.pt"))
    assert snapshots == ["step-000000.pt", "step-000010.pt", "step-000020.pt", "step-000030.pt"]


def test_the_run_keeps_its_config_and_the_command_samples_with_it(finished_run):
    results = finished_run / "results" / "tiny"
    kept = yaml.safe_load((results / "config.yaml").read_text())
    assert kept["train"]["steps"] == TINY_CONFIG["train"]["steps"]
    assert set(kept) == set(load_schema()["properties"])  # every section, its defaults filled in
    settings, source = cli.sampler_settings(results / "model" / "model.pt")
    assert settings == kept["sample"] and source.startswith(f"the run's config {results / 'config.yaml'}")


def test_phi_per_job_and_the_statistics_read_back(finished_run):
    results = finished_run / "results" / "tiny"
    shard_names = sorted(p.stem for p in (results / "shards").glob("*.tar"))
    assert shard_names == ["test-000000", "train-000000", "train-000001"]  # phi.shards_per_job 8: a file per split
    assert sorted(p.stem for p in (results / "phi").glob("*.parquet")) == ["test-000000-000000", "train-000000-000001"]
    phi = pd.read_parquet(results / "phi")
    assert len(phi) == 240 * 3 and set(phi.sigma.round(3)) == {0.0, 0.1, 0.5}
    assert phi.phi.map(len).eq(32).all()

    block_pr = pd.read_parquet(results / "stats" / "block_pr.parquet")
    assert set(block_pr.block) == {"E1", "E2", "M", "D2"} and block_pr.pr.between(0, 1).all()
    stability = pd.read_parquet(results / "stats" / "stability.parquet")
    assert stability[np.isclose(stability.sigma, 0.5)].cosine.dropna().round(6).eq(1).all()
    channels = pd.read_parquet(results / "stats" / "channels.parquet")
    summary = json.loads((results / "stats" / "channels.json").read_text())
    assert len(channels) == 32 and summary["selective"] == channels.selective.sum()
    assert {"sigma", "channels", "dead", "live", "selective", "rule", "threshold", "dip", "dip_p", "delta_bic",
            "delta_bic_low", "delta_bic_high", "alpha", "resamples", "confidence", "verdict"} <= set(summary)
    assert summary["rule"] == "test" and summary["verdict"] in ("holds", "contradicted", "undecided")
    assert summary["verdict"] == "holds" or summary["selective"] == 0  # rule test: none unless bimodal
    groups = pd.read_parquet(results / "stats" / "subspace_groups.parquet")
    assert set(groups.kind) <= {"active channels", "random"}
    heldout = pd.read_parquet(results / "stats" / "subspace_heldout.parquet")
    assert list(heldout.columns) == ["kind", "group", "key", "own_residual", "other_residual"]
    assert set(heldout.key) <= set(phi.key) and set(heldout.kind) == set(groups.kind)
    mi = pd.read_parquet(results / "stats" / "factor_mutual_information.parquet")
    assert {"background", "foreground", "fg_x"} <= set(mi.factor)
    for figure in ("block_pr", "stability", "channel_pr", "channel_montage", "subspaces", "factors"):
        width, height = Image.open(results / "figures" / f"{figure}.png").size
        assert width >= 500 and height >= 150


def test_clusters_neighbours_and_semantic_scores_read_back(finished_run):
    results = finished_run / "results" / "tiny"
    for features, dims in {"phi-s0.1": 32, "untrained-s0.1": 32, "pixels": 16 * 16 * 3}.items():
        assignments = pd.read_parquet(results / "clusters" / features / "k4" / "assignments.parquet")
        assert len(assignments) == 240 and assignments.cluster.between(0, 3).all() and (assignments.distance >= 0).all()
        centroids = pd.read_parquet(results / "clusters" / features / "k4" / "centroids.parquet")
        assert centroids["size"].sum() == 240 and centroids.centroid.map(len).eq(dims).all()
        assert Image.open(results / "figures" / "clusters" / f"{features}-k4.png").size[0] > 200

    neighbours = pd.read_parquet(results / "clusters" / "neighbours.parquet")
    assert set(neighbours.space) == {"φ σ=0.1", "pixels"} and len(neighbours) == 2 * 2 * 3
    assert (neighbours["query"] != neighbours.neighbour).all() and neighbours.groupby(["query", "space"]).distance.is_monotonic_increasing.all()

    table = pd.read_parquet(results / "clusters" / "semantic_scores.parquet")
    assert set(table.representation) == {"phi", "untrained", "pixels"}
    assert set(table.method) == {"k-means", "linear probe"} and {"label", "background", "fg_x"} <= set(table.target)
    nmi = table[(table.method == "k-means") & (table.metric == "nmi")]
    assert len(nmi) == 3 * nmi.target.nunique() and nmi.value.between(0, 1).all()
    probe = table[table.method == "linear probe"]
    assert probe.k.isna().all() and probe.value.between(0, 1).all()
    for figure in ("neighbours", "semantic_scores"):
        assert Image.open(results / "figures" / f"{figure}.png").size[0] > 500


def test_findings_read_back_with_intervals_and_verdicts(finished_run):
    results = finished_run / "results" / "tiny"
    table = pd.read_parquet(results / "findings.parquet")
    assert list(table.columns) == findings.COLUMNS
    claims = " ".join(table.claim)
    for claim in ("sparsity", "stability", "selective channels", "union of subspaces", "semantic clustering: φ beats pixels",
                  "semantic clustering: φ beats the untrained", "linear probe: φ beats pixels", "keep the gist: background"):
        assert claim in claims
    assert table.verdict.isin(findings.VERDICTS).all()
    assert set(table.unit) >= {"images", "channels", "held-out images", "test images", "conditioners"}
    measured = table[table.n > 0]
    for column in ("value", "baseline", "difference"):
        low, estimate, high = (measured[c] for c in (f"{column}_low", column if column != "baseline" else "baseline_value",
                                                     f"{column}_high"))
        assert (low <= high).all() and ((low <= estimate + 1e-9) & (estimate - 1e-9 <= high) | low.isna()).all()
    # A row holds exactly when its difference's interval excludes 0 in the claim's direction.
    sparsity = table.set_index("claim").loc["sparsity: the middle block is the sparsest"]
    assert (sparsity.verdict == "holds") == (sparsity.difference_high < 0)
    # The Markdown is the table's, re-rendered from the Parquet; the report's page is written.
    assert (results / "findings.md").read_text() == findings.markdown(table, "Findings on tiny")
    assert "<table" in (results / "findings.html").read_text()


def test_emergence_over_training_reads_back_and_a_new_step_runs_only_its_jobs(finished_run, tiny_config):
    results = finished_run / "results" / "tiny"
    table = pd.read_parquet(results / "emergence" / "emergence.parquet")
    assert sorted(table.step.unique()) == [0, 10, 30]
    assert set(table.method) == {"φ", "k-means", "linear probe", "denoiser"}
    psnr = table[table.method == "denoiser"].pivot(index="step", columns="sigma", values="value")
    assert (psnr.loc[30] > psnr.loc[0]).all()  # training denoises
    assert table[table.method == "φ"].value.between(0, 1).all()
    # Step 0 is the untrained baseline of the semantic scores: the same φ files, the same k-means scores.
    assert sorted(p.name for p in (results / "phi_snapshots").glob("step-*")) == ["step-000000", "step-000010"]
    scores = pd.read_parquet(results / "clusters" / "semantic_scores.parquet")
    for step, features in ((0, "untrained-s0.1"), (30, "phi-s0.1")):
        here = table[(table.step == step) & (table.method == "linear probe")].set_index("target").value
        there = scores[(scores.features == features) & (scores.method == "linear probe")].set_index("target").value
        assert np.allclose(here.sort_index(), there.sort_index())
    assert Image.open(results / "figures" / "emergence.png").size[0] > 800
    try:
        tiny_config["emergence"]["steps"] = [0, 10, 20, 30]
        write_config(finished_run, tiny_config)
        assert planned_jobs(finished_run) == {"all": 1, "phi_snapshot": 2, "emergence_step": 1, "emergence": 1,
                                              "run_config": 1}  # the run's config.yaml, rewritten at any change
        tiny_config["emergence"]["steps"] = [0, 15]
        write_config(finished_run, tiny_config)
        refused = snakemake(finished_run, "--dry-run", check=False)
        assert refused.returncode != 0 and "emergence.steps: [15] are not kept by training" in refused.stdout + refused.stderr
    finally:
        write_config(finished_run, TINY_CONFIG)


STATS = {"sparsity", "stability", "selectivity", "subspaces", "factors"}


def test_a_finished_run_plans_nothing_and_a_change_plans_only_what_depends_on_it(finished_run, tiny_config):
    assert planned_jobs(finished_run) == {}
    n_phi_jobs = len(list((finished_run / "results" / "tiny" / "phi").glob("*.parquet")))
    try:
        tiny_config["phi"]["sigmas"] = [0.0, 0.1, 0.3]
        write_config(finished_run, tiny_config)
        planned = planned_jobs(finished_run)
        assert planned["phi"] == n_phi_jobs and planned["block_means"] == 1 and STATS <= set(planned)
        assert planned["kmeans"] == 1 and planned["probe"] == 1  # φ's; the baselines do not depend on φ
        assert planned["emergence_step"] == 1 and planned["emergence"] == 1  # the last step's φ is φ itself
        assert not {"shard", "train", "phi_snapshot"} & set(planned)
        tiny_config["phi"]["sigmas"] = TINY_CONFIG["phi"]["sigmas"]
        tiny_config["cluster"]["ks"] = [3]
        write_config(finished_run, tiny_config)
        assert planned_jobs(finished_run) == {"all": 1, "kmeans": 3, "semantic_scores": 1, "emergence_step": 3,
                                              "emergence": 1, "findings": 1, "run_config": 1, "sample_clusters": 1,
                                              "block_semantics": 1,  # its k: the smallest of cluster.ks
                                              "explorer_data": 1, "explorer": 1}  # the clusters it shows
        tiny_config["cluster"]["ks"] = TINY_CONFIG["cluster"]["ks"]
        tiny_config["explorer"] = {"perplexity": 10}
        write_config(finished_run, tiny_config)
        assert planned_jobs(finished_run) == {"all": 1, "embedding": 1, "explorer_data": 1, "explorer": 1,
                                              "run_config": 1}
        tiny_config["train"]["lr"] = 5e-4
        write_config(finished_run, tiny_config)
        planned = planned_jobs(finished_run)
        assert "shard" not in planned and planned["train"] == 1 and planned["phi"] == n_phi_jobs
        tiny_config["data"]["samples_per_shard"] = 32
        write_config(finished_run, tiny_config)
        assert {"shard", "train"} <= set(planned_jobs(finished_run))
    finally:
        write_config(finished_run, TINY_CONFIG)


def rule_scripts(workflow: Path) -> dict[str, Path]:
    """{rule: its workflow script} of a run (a study's rules, rules/study.smk, are not a run's), read from the
    rule files' text; `use rule A as B` keeps A's script unless B names its own."""
    scripts, parents, rule = {}, {}, None
    run_rules = sorted(p for p in (workflow / "rules").glob("*.smk") if p.name != "study.smk")
    for line in "".join(p.read_text() for p in run_rules).splitlines():
        if match := re.match(r"(?:rule|checkpoint) (\w+):", line):
            rule = match[1]
        elif match := re.match(r"use rule (\w+) as (\w+)", line):
            rule, parents[match[2]] = match[2], match[1]
        elif match := re.match(r'\s+"\.\./workflow_scripts/(\w+\.py)"', line):
            scripts[rule] = workflow / "workflow_scripts" / match[1]
    for child, parent in parents.items():
        scripts.setdefault(child, scripts[parent])
    return scripts


def semcore_modules_imported(script: Path, workflow: Path) -> set[str]:
    """The semcore modules and packages a script imports, transitively, found by the standard library's
    ModuleFinder (independently of the workflow's own `script_code`)."""
    finder = ModuleFinder(path=[str(workflow)])  # the copy alone: torch, numpy… are not followed
    finder.run_script(str(script))
    return {name for name in finder.modules if name.split(".")[0] == "semcore"}


def module_of(path: Path, workflow: Path) -> str:
    """semcore/plan/names.py → semcore.plan.names; semcore/plan/__init__.py → semcore.plan."""
    parts = path.relative_to(workflow).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def dry_run_jobs(workdir: Path, *args: str) -> list[tuple[str, list[str], str]]:
    """(rule, input files, reason) of every job a dry run plans."""
    out = snakemake(workdir, "--dry-run", *args).stdout
    return [(rule, re.search(r"input: (.*)", body)[1].split(", ") if "input:" in body else [],
             re.search(r"reason: (.*)", body)[1])
            for rule, body in re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):\n(.*?)(?=\n\n)", out, re.M | re.S)]


def test_editing_a_semcore_module_replans_exactly_the_rules_whose_scripts_import_it(finished_run):
    workflow = finished_run / "workflow"  # the run's own copy of the workflow: the checkout is never edited
    imports = {rule: semcore_modules_imported(script, workflow) for rule, script in rule_scripts(workflow).items()}
    assert imports["phi_snapshot"] == imports["phi"] and "semcore.phi" in imports["phi"]
    # Each job declares as code exactly the modules its script imports, transitively, every one of them.
    # (Jobs after the `shard` checkpoint are known only while it does not rerun: it is forced on its own.)
    listed = [*dry_run_jobs(finished_run, "--forcerun", *sorted(set(imports) - {"shard"})),
              *dry_run_jobs(finished_run, "--forcerun", "shard")]
    for rule, inputs, _ in listed:
        code = [Path(i) for i in inputs if Path(i).is_relative_to(workflow / "semcore")]
        declared = {module_of(path, workflow) for path in code if path.suffix == ".py"}
        assert declared == imports.get(rule, set()), rule
        # and the files a module reads: the explorer's page template, style and script
        assert ("semcore.explorer_page" in declared) == (workflow / "semcore" / "web" / "explorer.js" in code), rule
    assert set(imports) <= {rule for rule, _, _ in listed}
    # Snakemake replans a job whose declared code changed: editing a module of each layer replans the rules
    # that import it; a rule that does not is replanned only below one that reruns (whose rerun hides, in
    # the dry run, what else changed for the jobs below it; a rerun of `shard` hides the jobs after it).
    for module in (workflow / "semcore" / "stats.py", workflow / "semcore" / "plan" / "names.py"):
        source, before = module.read_bytes(), module.stat()
        try:
            module.write_bytes(source + b"\n# an edit\n")  # a new mtime alone is not enough: Snakemake compares checksums
            jobs = dry_run_jobs(finished_run)
        finally:
            module.write_bytes(source)
            os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
        expected = {rule for rule, imported in imports.items() if module_of(module, workflow) in imported}
        direct = {rule for rule, _, reason in jobs if str(module) in reason}
        planned = {rule for rule, _, _ in jobs}
        assert expected and direct <= expected and (expected <= planned or "shard" in planned), module.name
        for rule, _, reason in jobs:
            assert rule in direct or reason.startswith("Input files updated by another job"), (module.name, rule, reason)
    assert planned_jobs(finished_run) == {}


def test_a_folder_with_broken_files_shards_and_explains_each_skip(tmp_path, tiny_config):
    images = tmp_path / "images"
    for label in ("red", "blue"):
        (images / label).mkdir(parents=True)
        for i in range(4):
            image = Image.new("RGB", (24, 20), label)
            image.putpixel((0, 0), (i, i, i))  # distinct bytes: identical files are skipped as duplicates
            image.save(images / label / f"{i}.png")
    (images / "red" / "zero.png").write_bytes(b"")
    (images / "blue" / "notes.txt").write_text("field notes")
    (images / "blue" / "small.png").write_bytes((images / "blue" / "0.png").read_bytes()[:40])
    tiny_config["data"] |= {"source": "folder", "folder": {"path": str(images)}}
    write_config(tmp_path, tiny_config)

    snakemake(tmp_path, "shard")
    manifest = pd.read_parquet(tmp_path / "results" / "tiny" / "manifest.parquet")
    assert len(manifest) == 11 and (manifest.status == "written").sum() == 8
    skipped = manifest[manifest.status == "skipped"]
    skipped.index = skipped.origin.str.split("/").str[-1]
    assert skipped.loc["zero.png", "reason"] == "empty file (0 bytes)"
    assert skipped.loc["notes.txt", "reason"].startswith("not an image")
    assert skipped.loc["small.png", "reason"]
    assert set(manifest[manifest.status == "written"].label_name) == {"red", "blue"}


def test_a_bad_config_is_refused_naming_its_key(tmp_path, tiny_config):
    tiny_config["data"]["size"] = 18
    write_config(tmp_path, tiny_config)
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0 and "data.size" in result.stdout + result.stderr


def test_killing_train_and_rerunning_resumes(tmp_path, tiny_config):
    tiny_config["train"] |= {"steps": 300, "batch_size": 8, "checkpoint_every": 5, "eval_every": 10_000}
    write_config(tmp_path, tiny_config)
    snakemake(tmp_path, "shard")
    checkpoint = tmp_path / "results" / "tiny" / "model" / "checkpoint.pt"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "2"]
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while not checkpoint.exists():
        assert time.time() < deadline and run.poll() is None, "train wrote no checkpoint"
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # snakemake and its job die at once, as on a node failure
    run.wait()
    assert not (tmp_path / "results" / "tiny" / "model" / "model.pt").exists()
    before = read_log(tmp_path / "results" / "tiny" / "model")
    last_logged = before[before.kind == "train"].step.max()

    snakemake(tmp_path, "--unlock")  # what a hard kill asks of the user, as Snakemake says
    snakemake(tmp_path, "train")
    log = read_log(tmp_path / "results" / "tiny" / "model")
    resumed = log[log.kind == "resume"].step.tolist()
    assert len(resumed) == 1 and 5 <= resumed[0] < 300
    assert resumed[0] >= last_logged - 5  # at most one checkpoint interval (train.checkpoint_every 5) is lost
    assert f"resumed from step {resumed[0]}" in (tmp_path / "results" / "tiny" / "logs" / "train.log").read_text()


def kill_when_started(workdir: Path, targets: list[str], logs: str, delay: float) -> None:
    """Run snakemake on `targets` and SIGKILL it and its jobs `delay` s after a log matching
    results/tiny/logs/`logs` appears (a job has started), as a node failure would."""
    log_dir = workdir / "results" / "tiny" / "logs"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *targets]
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not list(log_dir.glob(logs)):
        assert time.time() < deadline and run.poll() is None, f"no job wrote {logs}"
        time.sleep(0.05)
    time.sleep(delay)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    snakemake(workdir, "--unlock")


def test_a_second_run_killed_in_phi_kmeans_and_sample_ends_bit_identical_to_the_first(finished_run, tmp_path):
    """Kills leave only whole files and a rerun redoes the killed jobs; and the same config and seed give
    the same bytes: shards, manifest, model, snapshots, φ, k-means, samples."""
    write_config(tmp_path, TINY_CONFIG)
    snakemake(tmp_path, "train")
    results, reference = tmp_path / "results" / "tiny", finished_run / "results" / "tiny"
    delays = random.Random(0)
    targets = []  # the uninterrupted run's files (`--until` plans nothing past the shard checkpoint)
    for rule, logs, outputs in (("phi", "phi/*.log", "phi/*.parquet"), ("kmeans", "kmeans/*.log", "clusters/*/*/*.parquet"),
                                ("sample", "sample/*.log", "samples/*/*.parquet")):
        targets += [str(p.relative_to(finished_run)) for p in sorted(reference.glob(outputs))]
        kill_when_started(tmp_path, targets, logs, delays.uniform(0, 0.5))
        for path in results.glob(outputs):  # what is there under its name is whole: the uninterrupted run's
            assert path.read_bytes() == (reference / path.relative_to(results)).read_bytes(), path
        planned = planned_jobs(tmp_path, *targets)
        assert planned.get(rule) and not {"shard", "train"} & set(planned), planned
    snakemake(tmp_path, *targets)
    same = [*targets, *(str(p.relative_to(finished_run)) for pattern in ("shards/*", "model/*.pt", "model/snapshots/*",
                                                                         "phi_snapshots/step-000000/*")
                        for p in sorted(reference.glob(pattern)) if p.name != "checkpoint.pt")]
    assert len(same) > 20 and "results/tiny/model/model.pt" in same
    for path in [*same, "results/tiny/manifest.parquet"]:
        assert (tmp_path / path).read_bytes() == (finished_run / path).read_bytes(), f"{path} differs between two runs"


def test_the_workflow_runs_on_an_imported_authors_model(tmp_path, tiny_config):
    """The whole DAG plans on an imported network (no training: no emergence, only step 0's snapshot); the
    jobs that use the network run on it: its φ, the statistics, the clusters and the samples. (The jobs
    after those read tables, as they do after training: the finished run covers them.)"""
    torch.manual_seed(3)
    architecture = dict(channels=[8, 16, 32], enc_convs=[2, 2], mid_convs=2, dec_convs=[2, 2], upsample_bias=True)
    published = UNetFlex(UNetConfig(**architecture)).eval()
    authors.save(published, tmp_path / "denoiser")  # model.pt + exp_arguments.pkl, the authors' names
    tiny_config["model"]["pretrained"] = {"path": str(tmp_path / "denoiser"), "format": "authors"}
    write_config(tmp_path, tiny_config)
    refused = snakemake(tmp_path, "--dry-run", check=False)  # the config says no upsample bias: refused at once
    assert refused.returncode != 0 and "model.upsample_bias: configured False, found True" in refused.stdout + refused.stderr

    tiny_config["model"]["upsample_bias"] = True
    write_config(tmp_path, tiny_config)
    results = tmp_path / "results" / "tiny"
    plan = planned_jobs(tmp_path)
    assert {"shard", "train", "findings", "sample", "kmeans"} <= set(plan) and "emergence" not in plan
    snakemake(tmp_path, *(f"results/tiny/{path}" for path in (
        "stats/block_pr.parquet", "clusters/semantic_scores.parquet", "samples/samples.parquet")))
    imported = UNetFlex.from_pretrained(results / "model" / "model.pt")
    assert all(torch.equal(imported.state_dict()[k], v) for k, v in published.state_dict().items())
    log = read_log(results / "model")
    assert set(log.kind) == {"import", "eval"} and (log.step == 0).all()
    assert [p.name for p in (results / "model" / "snapshots").glob("*.pt")] == ["step-000000.pt"]  # the baseline

    # φ at σ = 0 is the published network's middle-block means of the image, computed here independently.
    phi = pd.read_parquet(results / "phi" / "test-000000-000000.parquet")
    first = phi[phi.sigma == 0].iloc[0]
    sample = next(s for s in wds.WebDataset(str(results / "shards" / "test-000000.tar"), shardshuffle=False).decode("rgb8")
                  if s["__key__"] == first.key)
    image = torch.tensor(sample["png"]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        assert np.allclose(first.phi, published.middle_means(image)[0].numpy(), atol=1e-5)
    assert len(pd.read_parquet(results / "stats" / "block_pr.parquet"))
    assert len(pd.read_parquet(results / "clusters" / "semantic_scores.parquet"))
    samples = pd.read_parquet(results / "samples" / "samples.parquet")
    assert set(samples.method) == {"self-guided", "unconditional"}
