"""The real Snakemake workflow on tiny configs, run in temporary directories and read back."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import webdataset as wds
from PIL import Image

from semcore.train import read_log

from conftest import REPO, planned_jobs, snakemake, write_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from conftest import TINY_CONFIG

    workdir = tmp_path_factory.mktemp("workflow")
    write_config(workdir, TINY_CONFIG)
    snakemake(workdir)
    return workdir


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


def test_a_finished_run_plans_nothing_and_a_training_change_plans_only_training(finished_run, tiny_config):
    assert planned_jobs(finished_run) == {}
    tiny_config["train"]["lr"] = 5e-4
    write_config(finished_run, tiny_config)
    try:
        assert planned_jobs(finished_run) == {"all": 1, "train": 1}
        tiny_config["data"]["samples_per_shard"] = 32
        write_config(finished_run, tiny_config)
        assert planned_jobs(finished_run) == {"all": 1, "shard": 1, "train": 1}
    finally:
        from conftest import TINY_CONFIG

        write_config(finished_run, TINY_CONFIG)


def test_a_folder_with_broken_files_shards_and_explains_each_skip(tmp_path, tiny_config):
    images = tmp_path / "images"
    for label in ("red", "blue"):
        (images / label).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (24, 20), label).save(images / label / f"{i}.png")
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
    tiny_config["train"] |= {"steps": 300, "batch_size": 8, "checkpoint_every": 5, "eval_every": 1000}
    write_config(tmp_path, tiny_config)
    snakemake(tmp_path, "shard")
    checkpoint = tmp_path / "results" / "tiny" / "model" / "checkpoint.pt"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "2"]
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while not checkpoint.exists():
        assert time.time() < deadline and run.poll() is None, "train wrote no checkpoint"
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(run.pid, signal.SIGKILL)  # snakemake and its job die at once, as on a node failure
    run.wait()
    assert not (tmp_path / "results" / "tiny" / "model" / "model.pt").exists()

    snakemake(tmp_path, "--unlock")  # what a hard kill asks of the user, as Snakemake says
    snakemake(tmp_path)
    log = read_log(tmp_path / "results" / "tiny" / "model")
    resumed = log[log.kind == "resume"].step.tolist()
    assert len(resumed) == 1 and 5 <= resumed[0] < 300
    assert f"resumed from step {resumed[0]}" in (tmp_path / "results" / "tiny" / "logs" / "train.log").read_text()
