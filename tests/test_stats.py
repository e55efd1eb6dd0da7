import dataclasses
import inspect
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from scipy.stats import norm
from sklearn.mixture import GaussianMixture

from semcore import block_semantics, figures, findings, stats
from semcore.plan.schema import schema_of

REPO = Path(__file__).resolve().parents[1]


def test_participation_ratio_known_values():
    n = 8
    assert stats.participation_ratio(np.eye(n)[3]) == pytest.approx(1 / n)
    assert stats.participation_ratio(np.full(n, 2.5)) == pytest.approx(1.0)
    half = np.r_[np.ones(4), np.zeros(4)]
    assert stats.participation_ratio(half) == pytest.approx(0.5)
    batch = np.stack([np.eye(n)[0], np.ones(n)])
    assert stats.participation_ratio(batch).tolist() == pytest.approx([1 / n, 1.0])
    assert stats.participation_ratio(batch, axis=0)[0] == pytest.approx(1.0)  # column 0 is [1, 1]
    assert np.isnan(stats.participation_ratio(np.zeros(n)))


def test_cosine_similarity():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = np.array([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    assert stats.cosine_similarity(a, b).tolist() == pytest.approx([0.0, 1.0, -1.0])


def phi_with_channel_pr(pr: np.ndarray, rng: np.random.Generator, images: int = 2000) -> np.ndarray:
    """φ [images, channels] (float32) whose channel c is 1 on round(pr_c · images) random images and 0
    elsewhere: its PR across images is exactly that fraction (NaN in pr: a dead channel)."""
    phi = np.zeros((images, len(pr)), np.float32)
    for c, value in enumerate(pr):
        if np.isfinite(value):
            phi[rng.choice(images, max(1, round(value * images)), replace=False), c] = 1
    return phi


def unimodal_pr(n: int = 256) -> np.ndarray:
    """n channel PRs at the quantiles of N(0.6, 0.1²): one mode, without a random draw's wiggles (a random
    draw of 256 can come out undecided: the bootstrap's upper end of ΔBIC sits near 0 on one mode)."""
    return norm.ppf((np.arange(n) + 0.5) / n, 0.6, 0.1)


def test_a_bimodal_channel_pr_holds_and_its_low_mode_is_selective():
    rng = np.random.default_rng(0)
    pr = np.r_[rng.normal(0.15, 0.03, 40), rng.normal(0.7, 0.08, 200), [np.nan] * 3]  # 3 dead channels
    start = time.perf_counter()
    test = stats.bimodality(pr, alpha=0.05, resamples=1000, confidence=0.95, seed=0)
    assert time.perf_counter() - start < 5
    assert test["verdict"] == "holds" and test["live"] == 240
    assert test["dip_p"] < 0.05 and 0 < test["delta_bic_low"] < test["delta_bic"] < test["delta_bic_high"]
    (w_low, m_low, _), (w_high, m_high, _) = test["components"]
    assert m_low == pytest.approx(0.15, abs=0.02) and m_high == pytest.approx(0.7, abs=0.02)
    assert w_low == pytest.approx(40 / 240, abs=0.02) and m_low < test["threshold"] < m_high

    table, summary = stats.channel_table(phi_with_channel_pr(pr, rng), active_fraction=0.1, rule="test")
    assert table.selective.tolist() == [True] * 40 + [False] * 203  # the low mode, never a dead channel
    assert table.dead.tolist() == [False] * 240 + [True] * 3 and table.pr[240:].isna().all()
    assert summary["verdict"] == "holds" and summary["selective"] == 40
    assert summary["threshold"] == summary["mixture_threshold"]
    assert (summary["channels"], summary["dead"], summary["live"], summary["rule"]) == (243, 3, 240, "test")
    assert {"threshold", "dip", "dip_p", "delta_bic", "delta_bic_low", "delta_bic_high", "alpha", "resamples",
            "confidence", "verdict"} <= set(summary)
    assert list(table.columns) == ["channel", "pr", "mean", "active_fraction", "dead", "selective"]


def test_a_unimodal_channel_pr_is_contradicted_and_only_other_rules_select():
    pr = unimodal_pr(256)
    phi = phi_with_channel_pr(np.r_[pr, np.nan], np.random.default_rng(0))  # and a dead channel
    table, summary = stats.channel_table(phi, active_fraction=0.1, rule="test")
    assert summary["verdict"] == "contradicted" and summary["dip_p"] > 0.5 and summary["delta_bic_high"] < 0
    assert summary["selective"] == 0 and not table.selective.any() and np.isnan(summary["threshold"])
    table, summary = stats.channel_table(phi, active_fraction=0.1, rule="otsu")
    assert summary["verdict"] == "contradicted" and 50 < summary["selective"] < 200 and not table.selective[256]
    assert table.selective.equals(table.pr < summary["threshold"])  # Otsu's split, whatever the test says
    table, summary = stats.channel_table(phi, active_fraction=0.1, rule=0.5)
    assert summary["threshold"] == 0.5 and summary["selective"] == (table.pr < 0.5).sum() > 0
    assert not table.selective[256]
    with pytest.raises(ValueError, match="selective rule 'kde'"):
        stats.channel_table(phi, active_fraction=0.1, rule="kde")


def test_six_channels_are_undecided_and_none_is_selective():
    phi = phi_with_channel_pr(np.array([0.1, 0.15, 0.5, 0.6, 0.7, 0.8]), np.random.default_rng(0))
    table, summary = stats.channel_table(phi, active_fraction=0.1)
    assert summary["verdict"] == "undecided" and np.isfinite(summary["dip_p"]) and len(summary["components"]) == 2
    assert summary["delta_bic_low"] < 0 < summary["delta_bic_high"]
    assert summary["selective"] == 0 and not table.selective.any() and np.isnan(summary["threshold"])


def test_bimodality_needs_four_distinct_live_prs():
    for pr in (np.array([np.nan, np.nan]), np.array([0.3, np.nan]), np.array([0.3, 0.3, 0.5, 0.6, np.nan])):
        test = stats.bimodality(pr)
        assert test["verdict"] == "undecided" and test["components"] == [] and np.isnan(test["threshold"])
        assert all(np.isnan(test[k]) for k in ("dip", "dip_p", "delta_bic", "delta_bic_low", "delta_bic_high"))
        assert np.isnan(stats.selective_threshold(pr, "test", test))
    assert np.isnan(stats.selective_threshold(np.array([0.3, 0.3, np.nan]), "otsu", test))


def test_bimodality_takes_512_channels_in_well_under_a_few_seconds():
    rng = np.random.default_rng(1)
    for pr in (rng.beta(6, 4, 512), np.r_[rng.normal(0.15, 0.05, 60), rng.normal(0.7, 0.1, 452)]):
        start = time.perf_counter()
        stats.bimodality(pr, resamples=1000)
        assert time.perf_counter() - start < 3


def test_the_bootstrap_fits_agree_with_scikit_learn():
    """The bootstrap's vectorised fits, on the sample itself, match scikit-learn's: one Gaussian exactly,
    two to within EM's tolerance."""
    rng = np.random.default_rng(2)
    x = np.r_[rng.normal(0.2, 0.05, 50), rng.normal(0.65, 0.1, 150)]
    one = GaussianMixture(1, covariance_type="spherical", reg_covar=stats.REG_COVAR).fit(x[:, None])
    assert stats._one_gaussian_loglik(x) == pytest.approx(one.score(x[:, None]) * len(x))
    two = GaussianMixture(2, covariance_type="spherical", reg_covar=stats.REG_COVAR, tol=1e-8, max_iter=5000,
                          n_init=5, random_state=0).fit(x[:, None])
    start = np.array([[0.5, 0.5]]), np.quantile(x, [0.25, 0.75])[None], np.full((1, 2), x.var() / 4)
    assert stats._two_gaussians_loglik(x[None], *start)[0] == pytest.approx(two.score(x[:, None]) * len(x), abs=0.5)


def test_the_channel_pr_figure_shows_the_test(tmp_path):
    rng = np.random.default_rng(0)
    for name, pr, rule in (("bimodal", np.r_[rng.normal(0.15, 0.03, 40), rng.normal(0.7, 0.08, 200)], "test"),
                           ("unimodal", unimodal_pr(256), "test"), ("otsu", unimodal_pr(256), "otsu"),
                           ("zeros", np.full(8, np.nan), "test")):
        phi = phi_with_channel_pr(pr, rng, images=500)
        table, summary = stats.channel_table(phi, active_fraction=0.1, rule=rule, resamples=200)
        figures.channel_pr_histogram(table, summary, str(tmp_path / f"{name}.png"))
        width, height = Image.open(tmp_path / f"{name}.png").size
        assert width == round(figures.COLUMN * 300) and height > (250 if name == "zeros" else 500)


def test_the_selectivity_rule_passes_every_setting_through_params():
    smk = (REPO / "rules" / "stats.smk").read_text()
    body = re.search(r"^rule selectivity:\n(.*?)(?=^\S|\Z)", smk, re.M | re.S)[1]
    params = dict(re.findall(r"^\s+(\w+)=(config\[.*?\]),?$", body.split("params:")[1].split("script:")[0], re.M))
    assert params == {"sigma": 'config["stats"]["sigma"]', "active_fraction": 'config["stats"]["active_fraction"]',
                      "montage_channels": 'config["stats"]["montage_channels"]',
                      "montage_images": 'config["stats"]["montage_images"]',
                      "rule": 'config["stats"]["selective_rule"]', "alpha": 'config["stats"]["bimodality_alpha"]',
                      "resamples": 'config["findings"]["resamples"]', "confidence": 'config["findings"]["confidence"]',
                      "seed": 'config["findings"]["seed"]'}
    script = (REPO / "workflow_scripts" / "selectivity.py").read_text()
    assert all(f"p.{name}" in script for name in params)
    for key in params.values():  # every key is in the schema, with a default
        section, name = re.findall(r'"(\w+)"', key)
        assert "default" in schema_of(f"{section}.{name}")
    # The functions' defaults are the schema's.
    defaults = inspect.signature(stats.channel_table).parameters
    assert defaults["rule"].default == schema_of("stats.selective_rule")["default"]
    assert defaults["alpha"].default == schema_of("stats.bimodality_alpha")["default"]
    for name in ("resamples", "confidence", "seed"):
        assert defaults[name].default == schema_of(f"findings.{name}")["default"]


def test_effective_dimension_and_principal_angles():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(200, 2)) @ np.eye(6)[:2]  # in the span of e0, e1
    other = rng.normal(size=(200, 2)) @ np.eye(6)[2:4]  # in the span of e2, e3
    assert stats.effective_dimension(plane, 0.99) == 2
    assert stats.effective_dimension(rng.normal(size=(500, 6)), 0.99) == 6
    assert stats.participation_dimension(np.outer(rng.uniform(1, 2, 50), np.ones(6))) == pytest.approx(1.0)
    assert stats.participation_dimension(np.eye(6)[[0, 1, 2] * 10]) == pytest.approx(3.0)
    a, b = stats.principal_subspace(plane, 2), stats.principal_subspace(other, 2)
    assert stats.principal_angles(a, b) == pytest.approx([90.0, 90.0])
    assert stats.principal_angles(a, a) == pytest.approx([0.0, 0.0], abs=1e-5)


def test_mutual_information_finds_the_channel_that_encodes_a_factor():
    rng = np.random.default_rng(0)
    shape = rng.choice(["disk", "ring"], 500)
    position = rng.uniform(0, 1, 500)
    phi = rng.normal(size=(500, 4))
    phi[:, 1] += 3 * (shape == "disk")
    phi[:, 3] = position + 0.01 * rng.normal(size=500)
    table = stats.factor_mutual_information(phi, pd.DataFrame({"shape": shape, "position": position}))
    best = table.loc[table.groupby("factor").mutual_information.idxmax()].set_index("factor").channel
    assert best["shape"] == 1 and best["position"] == 3


# Zeros: dead channels, images whose φ is zero, a whole φ of zeros, through the functions the workflow's
# stats scripts call (semcore.stats' docstring lists the values).

def two_groups_with_zeros(rng: np.random.Generator) -> np.ndarray:
    """Two groups of images (channels 1 and 2 selective, tests/test_subspaces.py groups them), channel 4
    dead, and 20 images whose φ is zero (float32, as φ files are)."""
    n = 100
    phi = np.zeros((2 * n + 20, 5), np.float32)
    phi[:2 * n, 0] = rng.uniform(1, 2, 2 * n)
    phi[:n, 1] = rng.uniform(1, 2, n)
    phi[n:2 * n, 2] = rng.uniform(1, 2, n)
    phi[:2 * n, 3] = rng.uniform(0, 0.1, 2 * n)
    return phi


def block_means_table(means: dict[tuple[str, str, float], np.ndarray]) -> pa.Table:
    """A block-means table as phi.write_block_means writes it, from {(key, block, σ): means}."""
    keys, blocks, sigmas = zip(*means)
    return pa.table({"key": keys, "sigma": pa.array(sigmas, pa.float64()), "block": blocks,
                     "means": [m.tolist() for m in means.values()]})


def test_zero_means_have_undefined_pr_and_cosine_counted_in_the_findings():
    rng = np.random.default_rng(0)
    means = {(f"x{i}", block, sigma): rng.uniform(0, 1, 4)
             for i in range(4) for block in ("E1", "M") for sigma in (0.0, 0.5)}
    means["x0", "M", 0.0] = np.zeros(4)  # an image whose middle-block means are zero at σ1
    means["x1", "E1", 0.5] = np.zeros(4)
    table = block_means_table(means)
    block_pr = stats.block_pr_table(table, 0.0)
    undefined = block_pr[block_pr.pr.isna()]
    assert list(zip(undefined.key, undefined.block)) == [("x0", "M")] and len(block_pr) == 8
    stability = stats.stability_table(table, 0.0)
    undefined = stability[stability.cosine.isna()]
    assert sorted(zip(undefined.key, undefined.block, undefined.sigma)) == [
        ("x0", "M", 0.0), ("x0", "M", 0.5), ("x1", "E1", 0.5)]  # against σ1 = 0, and σ2 = 0.5
    # The findings pair images: an image undefined in either block is left out of both, and counted.
    sparsity = findings.sparsity(block_pr)
    assert sparsity["value"] == pytest.approx(block_pr[block_pr.block == "M"].pr.dropna().mean())
    assert sparsity["n"] == 3 and sparsity["note"] == "1 of 4 images with an undefined value (zero ā) left out"
    assert sparsity["baseline"] == "lowest other block (E1)"
    stable = findings.stability(stability, 0.0)  # σ2 = 0.5 alone: x0 undefined in M, x1 in E1
    assert stable["n"] == 2 and stable["note"] == "2 of 4 images with an undefined value (zero ā) left out"


def test_dead_channels_are_not_selective_and_carry_no_information():
    phi = two_groups_with_zeros(np.random.default_rng(0))
    table, summary = stats.channel_table(phi, active_fraction=0.1, rule="otsu")
    assert table.dead.tolist() == [False, False, False, False, True]
    dead = table.iloc[4]
    assert np.isnan(dead.pr) and dead["mean"] == 0 and dead.active_fraction == 0 and not dead.selective
    assert table.pr[:4].notna().all() and np.isfinite(summary["threshold"]) and table.selective[[1, 2]].all()
    assert (summary["dead"], summary["live"]) == (1, 4)
    factors = pd.DataFrame({"group": np.repeat(["a", "b", "none"], [100, 100, 20])})
    mi = stats.factor_mutual_information(phi, factors)
    assert mi.mutual_information[4] == 0 and mi.mutual_information[1] > 0.3


def test_a_phi_of_zeros_gives_defined_empty_statistics():
    block_means = block_means_table({(f"x{i}", block, sigma): np.zeros(4)
                                     for i in range(3) for block in ("E1", "M") for sigma in (0.0, 0.5)})
    block_pr, stability = stats.block_pr_table(block_means, 0.0), stats.stability_table(block_means, 0.0)
    assert block_pr.pr.isna().all() and len(block_pr) == 6 and stability.cosine.isna().all()
    for row in findings.sparsity(block_pr), findings.stability(stability, 0.0):
        assert np.isnan(row["value"]) and np.isnan(row["baseline_value"]) and row["verdict"] == "undecided"
        assert row["note"] == "no defined value of M or of any other block"

    phi = np.zeros((50, 6), np.float32)
    assert np.isnan(stats.participation_ratio(phi, axis=1)).all()
    assert stats.effective_dimension(phi, 0.99) == 0 and stats.participation_dimension(phi) == 0
    for rule in ("test", "otsu", 0.5):
        table, summary = stats.channel_table(phi, active_fraction=0.1, rule=rule)
        assert table.dead.all() and table.pr.isna().all() and table.active_fraction.eq(0).all()
        assert not table.selective.any() and summary["selective"] == 0 and summary["live"] == 0
        assert summary["verdict"] == "undecided" and np.isnan(summary["delta_bic"]) and np.isnan(summary["dip"])
    mi = stats.factor_mutual_information(phi, pd.DataFrame({"size": np.linspace(0, 1, 50)}))
    assert mi.mutual_information.eq(0).all()
    # The summary the selectivity rule writes, and the findings read from it (the union of subspaces of a
    # φ of zeros: tests/test_subspaces.py).
    assert findings.selectivity(summary)["verdict"] == "undecided"


def write_block_means_with_a_semantic_block(path: Path, rng: np.random.Generator) -> tuple[pd.Series, pd.DataFrame]:
    """A block-means file of 120 images in 4 classes where M at σ 0.1 separates the classes (class centres
    4 apart, unit noise) and is noise at σ 0.5, E1 and D2 noise at both; each (block, σ)'s rows in an image
    order of their own, which the scores must undo by key. Returns the keys and the scene factors (shape:
    categorical, a function of the class; x: numeric, noise)."""
    classes = np.repeat(np.arange(4), 30)
    keys = pd.Series([f"x{i:03d}" for i in range(len(classes))])
    centres = 4 * np.eye(4, 8)
    columns = {name: [] for name in ("key", "split", "label", "sigma", "block", "means")}
    for block in ("E1", "M", "D2"):
        for sigma in (0.1, 0.5):
            means = rng.normal(size=(len(classes), 8)) + (centres[classes] if (block, sigma) == ("M", 0.1) else 0)
            for i in rng.permutation(len(classes)):
                for name, value in zip(columns, (keys[i], "test", int(classes[i]), sigma, block, means[i].tolist())):
                    columns[name].append(value)
    pq.write_table(pa.table(columns), path)
    factors = pd.DataFrame({"shape": np.where(classes % 2, "disk", "square"), "x": rng.uniform(size=len(classes))},
                           index=keys)
    return keys, factors


def test_the_block_semantics_map_finds_the_block_that_separates_the_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "block_means.parquet"
    keys, factors = write_block_means_with_a_semantic_block(path, rng)
    pixels = rng.normal(size=(len(keys), 48)).astype(np.float32)
    settings = block_semantics.Settings(k=None, ks=[4, 10], sigmas=[0.1, 0.5], n_init=2, probe_max_iter=200)
    table = block_semantics.block_semantics_table(str(path), keys, pixels, factors, settings)
    only = block_semantics.block_semantics_table(str(path), keys, pixels, factors,
                                                 dataclasses.replace(settings, sigmas=[0.1]))
    assert set(only.sigma) == {0.0, 0.1}  # stats.block_semantics_sigmas: the map at those σ (and the pixels)

    assert block_semantics.clusters_k(None, [4, 10], len(keys)) == 4 and table.k.dropna().eq(4).all()
    assert set(table.groupby(["target", "score"]).groups) == {
        ("label", "ami"), ("shape", "ami"), ("x", "ami"), ("label", "probe_accuracy"), ("shape", "probe_accuracy")}
    label = table[table.target == "label"].set_index(["block", "sigma", "score"]).value
    assert len(label) == 2 * (3 * 2 + 1) and table.n_images.eq(120).all() and table.folds.dropna().eq(5).all()
    assert list(table.drop_duplicates("block").block_index) == [pd.NA, 0, 1, 2]  # pixels, then network order
    assert label["M", 0.1, "ami"] > 0.8 and label["M", 0.1, "probe_accuracy"] > 0.95
    for block, sigma in [("E1", 0.1), ("E1", 0.5), ("M", 0.5), ("D2", 0.1), ("pixels", 0.0)]:
        assert label[block, sigma, "ami"] < 0.1 and label[block, sigma, "probe_accuracy"] < 0.45  # chance: 0.25
    ami = table[table.score == "ami"].pivot_table(index="target", columns=["block", "sigma"], values="value")
    assert ami.loc["shape"].idxmax() == ("M", 0.1) and (ami.loc["x"] < 0.1).all()

    figures.block_semantics(table, tmp_path / "block_semantics.png")
    assert Image.open(tmp_path / "block_semantics.png").size[0] > 800


def test_the_block_semantics_probe_is_cross_validated():
    """Pure noise with many dimensions: a probe scored on the images it was fit on would be right on almost
    every one; held out, it stays near chance."""
    rng = np.random.default_rng(1)
    x, classes = rng.normal(size=(60, 200)), np.repeat([0, 1, 2], [30, 27, 3])
    accuracy, folds = block_semantics.cross_validated_accuracy(x, classes, max_iter=200)
    assert folds == 3 and accuracy < 0.7  # the smallest class has 3 images; chance (majority): 0.5


def test_the_block_semantics_rule_passes_every_setting_through_params():
    smk = (REPO / "rules" / "stats.smk").read_text()
    body = re.search(r"^rule block_semantics:\n(.*?)(?=^\S|\Z)", smk, re.M | re.S)[1]
    params = dict(re.findall(r"^\s+(\w+)=(.*?),?$", body.split("params:")[1].split("script:")[0], re.M))
    assert set(block_semantics.Settings.__dataclass_fields__) | {"max_images"} == set(params)
    assert params["k"] == 'config["stats"]["block_semantics_k"]'
    assert schema_of("stats.block_semantics_k")["default"] is None
    for name, field in block_semantics.Settings.__dataclass_fields__.items():  # the defaults are the schema's
        if name not in ("k", "ks", "sigmas"):
            assert field.default == schema_of(f"cluster.{name}")["default"], name


def test_the_finished_run_maps_every_block_at_every_sigma(finished_run):
    results = finished_run / "results" / "tiny"
    table = pd.read_parquet(results / "stats" / "block_semantics.parquet")
    blocks = pq.read_table(results / "block_means.parquet", columns=["block", "sigma"]).to_pandas()
    label = table[table.target == "label"]
    for score in ("ami", "probe_accuracy"):
        mapped = label[(label.score == score) & (label.block != "pixels")]
        assert set(zip(mapped.block, mapped.sigma)) == set(zip(blocks.block, blocks.sigma))
        assert len(mapped) == len(blocks.drop_duplicates())
        assert (label[label.block == "pixels"].score == score).any()
    assert table[table.score == "ami"].value.between(-0.5, 1).all()
    assert table[table.score == "probe_accuracy"].value.between(0, 1).all()
    assert {"background", "foreground"} <= set(table.target)  # the scene factors
    assert (results / "figures" / "block_semantics.png").stat().st_size > 10_000
