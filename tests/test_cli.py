"""The `semcore` command and its functions, run for real on a small model and a few PNGs."""

import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from semcore import authors, cli
from semcore.model import UNetFlex
from semcore.phi import read_phi
from semcore.plan.settings import UNetConfig

COLOURS = {"reds/a.png": (200, 30, 30), "reds/b.png": (230, 60, 40), "blues/c.png": (20, 40, 210),
           "blues/d.png": (50, 60, 190), "top.png": (30, 200, 40)}
SAMPLER = ["--set", "start=grey", "--set", "n_noise=2", "--set", "schedule.steps=3", "--set", "matching.max_iter=3"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small saved model and five 16×16 PNGs (two labelled folders and one file at the top), one 20×24."""
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = UNetFlex(UNetConfig(channels=[8, 16, 32], enc_convs=1, mid_convs=1, dec_convs=2))
    model.save_pretrained(root / "model.pt")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (24, 20, 3) if name == "top.png" else (16, 16, 3)
        pixels = np.clip(np.array(colour) + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path)
    (root / "images" / "broken.png").write_text("not an image")
    return root


def run(*argv):
    cli.main([str(a) for a in argv])


def test_info(setup, capsys):
    model = UNetFlex.from_pretrained(setup / "model.pt")
    summary = cli.info(setup / "model.pt")
    assert summary["format"] == "semcore" and summary["config"]["channels"] == [8, 16, 32]
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
    assert set(summary["receptive_fields"]) == {"E1", "E2", "M", "D2", "output"}
    assert summary["training"] is None
    run("info", setup / "model.pt")
    out = capsys.readouterr().out
    assert f"parameters: {summary['parameters']:,}" in out and "receptive fields (px): E1 3" in out


def test_info_training_summary(setup, tmp_path):
    run_dir = tmp_path / "model"
    run_dir.mkdir()
    UNetFlex.from_pretrained(setup / "model.pt").save_pretrained(run_dir / "model.pt")
    (run_dir / "log.jsonl").write_text(
        '{"kind": "train", "step": 10, "loss": 3.0, "lr": 0.001, "img_per_s": 100.0}\n'
        '{"kind": "eval", "step": 10, "sigma": 0.1, "psnr_noisy": 20.0, "psnr_denoised": 25.0}\n'
        '{"kind": "resume", "step": 10}\n'
        '{"kind": "train", "step": 20, "loss": 2.0, "lr": 0.001, "img_per_s": 300.0}\n'
        '{"kind": "eval", "step": 20, "sigma": 0.1, "psnr_noisy": 20.0, "psnr_denoised": 27.0}\n'
        '{"kind": "eval", "step": 20, "sigma": 0.3, "psnr_noisy": 10.5, "psnr_denoised": 21.0}\n')
    training = cli.info(run_dir / "model.pt")["training"]
    assert training == dict(steps=20, final_loss=2.0, psnr_step=20, psnr={0.1: (20.0, 27.0), 0.3: (10.5, 21.0)},
                            img_per_s=200.0, resumes=1, imported=False)


def test_phi(setup, tmp_path, capsys):
    out = tmp_path / "phi.parquet"
    run("phi", setup / "model.pt", setup / "images", setup / "images" / "top.png", "--sigma", 0.3, "--sigma", 0.1,
        "--n-noise", 2, "--size", 16, "-o", out)
    err = capsys.readouterr().err
    assert "broken.png: not an image" in err and "top.png: given twice" in err
    table = cli.phi_of_images(setup / "model.pt", [setup / "images"], [0.1, 0.3], n_noise=2, size=16)
    assert list(table.columns) == ["key", "split", "label", "sigma", "phi"]
    assert len(table) == 10 and table.phi.iloc[0].shape == (32,)
    labels = dict(zip(table.key.map(lambda k: Path(k).name), table.label))
    assert labels == {"a.png": 1, "b.png": 1, "c.png": 0, "d.png": 0, "top.png": -1}  # blues, reds: sorted
    meta, phi = read_phi([str(out)], 0.3)
    at = table[table.sigma == 0.3]
    assert meta.key.tolist() == at.key.tolist() and (meta.split == "external").all()
    np.testing.assert_array_equal(phi, np.stack(at.phi))
    assert pd.read_parquet(out).shape == (10, 5)
    assert duckdb.sql(f"SELECT count(DISTINCT sigma) FROM '{out}'").fetchall() == [(2,)]
    # An image's φ does not depend on the other images given.
    alone = cli.phi_of_images(setup / "model.pt", [setup / "images" / "reds" / "a.png"], [0.3], n_noise=2, size=16)
    np.testing.assert_array_equal(alone.phi.iloc[0], at[at.key == alone.key.iloc[0]].phi.iloc[0])


def test_neighbours(setup, tmp_path, capsys):
    out = tmp_path / "phi.parquet"
    run("phi", setup / "model.pt", setup / "images", "--sigma", 0, "--sigma", 0.1, "--n-noise", 2, "--size", 16,
        "-o", out)
    key = str(setup / "images" / "reds" / "a.png")
    table = cli.neighbours(out, key, k=3)
    assert table.attrs["sigma"] == 0.1  # the smallest σ > 0
    assert table.key.iloc[0] == key and table.distance.iloc[0] == 0 and table["rank"].tolist() == [0, 1, 2]
    assert table.file.iloc[0] == key and table.label_name.iloc[0] == "reds"  # the sub-folder names the label
    assert (np.diff(table.distance) >= 0).all()
    # An image file that is no key: its φ computed with the model the metadata names, at the recorded size.
    copy = tmp_path / "copy.png"
    copy.write_bytes(Path(key).read_bytes())
    again = cli.neighbours(out, copy, k=3)
    assert again.key.iloc[0] == key and again.distance.iloc[0] == 0
    run("neighbours", out, key, "-k", 2, "--sigma", 0)
    printed = capsys.readouterr().out
    assert "σ 0" in printed and "rank" in printed and key in printed and "reds" in printed


def test_sample(setup, tmp_path, capsys):
    grid = tmp_path / "grid.png"
    images, errors = cli.sample(setup / "model.pt", setup / "images" / "reds" / "a.png", n=3, settings=dict(
        start="grey", n_noise=2, schedule=dict(steps=3), matching=dict(max_iter=3)), grid=grid)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
    assert errors.shape == (3,) and np.isfinite(errors).all()
    scale, gap = cli.GRID_PIXELS // 16, 2
    assert Image.open(grid).size == (4 * (16 * scale + gap) + gap, 16 * scale + 2 * gap)
    run("sample", setup / "model.pt", "--target", setup / "images" / "top.png", "-n", 2, *SAMPLER,
        "--algorithm", "fixed", "-o", tmp_path / "cli.png")
    printed = capsys.readouterr().out
    assert "algorithm fixed" in printed and "sample 1: relative φ error" in printed
    side = 20  # top.png is 20×24: its shorter side, a multiple of 4 (the UNet pools twice)
    assert Image.open(tmp_path / "cli.png").size[0] == 3 * (side * (cli.GRID_PIXELS // side) + gap) + gap


def test_workflow_run(setup, tmp_path, capsys):
    """A model, shards and φ laid out as a workflow run: the φ directory's metadata names the model relative to
    the run's working directory, as the workflow records it; the run's shards give the image size and the
    sampler's start image."""
    from semcore import phi, shards, sources

    run_dir = tmp_path / "results" / "demo"
    shards.write_shards(sources.folder(setup / "images"), run_dir / "shards", source="folder", size=8, channels=3,
                        min_size=8, test_fraction=0.4, seed=0, samples_per_shard=100)
    (run_dir / "model").mkdir()
    model_path = run_dir / "model" / "model.pt"
    UNetFlex.from_pretrained(setup / "model.pt").save_pretrained(model_path)
    for split in ("train", "test"):
        phi.write_phi(UNetFlex.from_pretrained(model_path), shards.shard_paths(run_dir / "shards", split),
                      run_dir / "phi" / f"{split}-000000-000000.parquet", sigmas=[0.0, 0.3], n_noise=2, seed=0,
                      batch_images=8, device=torch.device("cpu"), metadata=dict(model=str(model_path.relative_to(tmp_path)), seed=0))
    table = cli.neighbours(run_dir / "phi", setup / "images" / "blues" / "c.png", k=10, sigma=0.3)
    assert len(table) == 5 and table["rank"].tolist() == list(range(5))  # k: at most the images there are
    images, _ = cli.sample(model_path, setup / "images" / "reds" / "a.png", n=1, settings=dict(
        n_noise=1, schedule=dict(steps=2), matching=dict(max_iter=2)))
    assert images.shape == (1, 8, 8, 3)  # the run's size; started from its training images' mean colour
    # With the config the run was made with (results/<name>/config.yaml, rule run_config), its sample section
    # is the settings (here the adaptive sampler, as the demo's); --set and --algorithm still change them.
    ascent = dict(sigma_0=0.5, sigma_final=0.3, h0=0.3, beta=0.5, h_schedule=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(dict(name="demo", sample=dict(
        algorithm="adaptive", ascent=ascent, n_noise=1, matching=dict(max_iter=2)))))
    target = setup / "images" / "reds" / "a.png"
    run("sample", model_path, "--target", target, "-n", 1, "--set", "seed=3", "-o", tmp_path / "g.png")
    printed = capsys.readouterr().out
    assert f"the run's config {run_dir / 'config.yaml'} (name demo), changed by --set seed=3)" in printed
    assert "algorithm adaptive, start mean_colour, n_noise 1" in printed and "seed 3, ascent {'sigma_0': 0.5" in printed
    run("sample", model_path, "--target", target, "-n", 1, "--algorithm", "fixed", "--set", "schedule.steps=2",
        "-o", tmp_path / "g.png")
    assert "algorithm fixed" in capsys.readouterr().out
    settings, source = cli.sampler_settings(setup / "model.pt")  # a model outside any run
    assert settings == cli.sampler_settings(None)[0] and settings["algorithm"] == "fixed"
    assert source == cli.SCHEMA_DEFAULTS


def test_import_authors(setup, tmp_path, capsys):
    model = UNetFlex(UNetConfig(channels=[8, 16, 32], norm="batch", upsample_bias=True))
    authors.save(model.eval(), tmp_path / "authors")
    run("import-authors", tmp_path / "authors", "-o", tmp_path / "imported.pt")
    assert "wrote" in capsys.readouterr().out
    assert cli.import_authors(tmp_path / "authors" / "model.pt", tmp_path / "again.pt") == tmp_path / "again.pt"
    imported = UNetFlex.from_pretrained(tmp_path / "imported.pt").eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert (imported(x) - model(x)).abs().max() < 1e-5
    assert cli.info(tmp_path / "authors")["format"] == "authors"


@pytest.mark.parametrize("argv, message", [
    (["info", "{root}/missing.pt"], "missing.pt: no such file or folder"),
    (["info", "{root}/images/top.png"], "top.png: not a model"),
    (["phi", "{root}/model.pt", "{root}/nowhere", "--sigma", "0.1", "-o", "{root}/x.parquet"], "nowhere: no such"),
    (["phi", "{root}/model.pt", "{root}/images/broken.png", "--sigma", "0.1", "-o", "{root}/x.parquet"],
     "none of the 1 inputs"),
    (["phi", "{root}/model.pt", "{root}/images", "--sigma", "0.1", "--size", "10", "-o", "{root}/x.parquet"],
     "--size 10: must be a positive multiple of 4"),
    (["neighbours", "{root}/phi.parquet", "no_such_key"], "no_such_key: neither a key"),
    (["neighbours", "{root}/phi.parquet", "{root}/images/reds/a.png", "--sigma", "0.7"], "--sigma 0.7: not in"),
    (["neighbours", "{root}/model.pt", "x"], "not a Parquet file"),
    (["sample", "{root}/model.pt", "--target", "{root}/images/top.png", "-o", "{root}/g.png"],
     "start mean_colour is made from the training images: give --shards"),
    (["sample", "{root}/model.pt", "--target", "{root}/images/broken.png", "--set", "start=grey", "-o", "{root}/g.png"],
     "broken.png: not an image"),
    (["sample", "{root}/model.pt", "--target", "{root}/images/top.png", "--set", "schedule.step=3",
      "-o", "{root}/g.png"], "unknown key 'step' (did you mean 'steps'?)"),
    (["import-authors", "{root}/model.pt", "-o", "{root}/y.pt"], "model.pt: a model.pt this package wrote already"),
])
def test_errors(setup, argv, message, capsys):
    if not (setup / "phi.parquet").exists():
        run("phi", setup / "model.pt", setup / "images", "--sigma", 0.1, "--n-noise", 1, "--size", 16,
            "-o", setup / "phi.parquet")
    with pytest.raises(SystemExit) as error:
        cli.main([a.format(root=setup) for a in argv])
    text = str(error.value.code)
    assert text.startswith(f"semcore {argv[0]}: ") and message in text and "\n" not in text


def test_installed_command_help(capsys):
    """The installed command answers (one start: torch's import costs seconds), and every subcommand's help
    has its usage and an example."""
    semcore = Path(sys.executable).with_name("semcore")
    result = subprocess.run([semcore, "--help"], capture_output=True, text=True, check=True)
    assert "example:" in result.stdout and "usage: semcore" in result.stdout
    for command in ("info", "phi", "neighbours", "explore", "sample", "import-authors"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        printed = capsys.readouterr().out
        assert "example:" in printed and f"usage: semcore {command}" in printed
