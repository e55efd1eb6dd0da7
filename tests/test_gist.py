import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from semcore import gist, scores, shards
from semcore.plan.inputs import check_folder
from semcore.sources import folder, synthetic


def manifest_of(rows: list[dict], source: str = "synthetic") -> pd.DataFrame:
    """A manifest of written test images from (key, label, factors) rows."""
    return pd.DataFrame([dict(key=r["key"], label=r.get("label", 0), label_name=r.get("label_name", ""),
                              source=source, split="test", status="written",
                              factors=json.dumps(r["factors"]) if r.get("factors") else None) for r in rows])


def test_scene_factors_become_heads_with_circular_hue_bins():
    manifest = manifest_of([
        dict(key="a", factors=dict(background="flat", foreground="none", bg_hue=0.0)),
        dict(key="b", factors=dict(background="stripes", foreground="disk", bg_hue=0.99, fg_hue=0.5)),
        dict(key="c", factors=dict(background="lattice", foreground="ring", bg_hue=1 / 6, fg_hue=0.1)),
    ])
    codes, classes = gist.gist_targets(manifest, hue_bins=6)
    assert list(classes) == ["background", "foreground", "bg_hue", "fg_hue"]
    assert classes["background"] == ["flat", "gradient", "lattice", "stripes"] and len(classes["fg_hue"]) == 6
    assert codes.loc["a"].tolist() == [0, 0, 0, -1]  # no foreground: fg_hue does not apply
    assert codes.loc["b"].tolist() == [3, 1, 5, 3]
    assert codes.loc["c"].tolist() == [2, 4, 1, 0]
    assert gist.gist_targets(manifest, hue_bins=2)[0].bg_hue.tolist() == [0, 1, 0]


def test_a_source_without_factors_has_one_label_head_and_unlabelled_images_are_left_out():
    manifest = manifest_of([dict(key="a", label=3, label_name="three"), dict(key="b", label=7, label_name="seven"),
                            dict(key="c", label=3, label_name="three"), dict(key="d", label=-1),
                            dict(key="e", label=7, label_name="seven")], source="folder")
    codes, classes = gist.gist_targets(manifest, hue_bins=6)
    assert classes == {"label": ["three", "seven"]}
    assert codes.label.tolist() == [0, 1, 0, -1, 1]
    # The network takes grayscale images of the smallest size, also with a last batch of one image.
    images = torch.randint(0, 256, (9, 1, 8, 8), dtype=torch.uint8)
    net = gist.train(images, torch.tensor([[0], [1], [0], [-1], [1], [0], [1], [0], [1]]), classes,
                     gist.GistConfig(max_steps=3, eval_every=1, batch_size=4))
    assert gist.predict(net, images).shape == (9, 1) and gist.features(net, images).shape == (9, 16 * 16)


def test_a_source_of_one_class_is_refused_with_the_reason():
    manifest = manifest_of([dict(key=k, label=2, label_name="two") for k in "abc"], source="mnist5k")
    with pytest.raises(ValueError, match="'mnist5k' images have fewer than two classes"):
        gist.gist_targets(manifest, hue_bins=6)


FIXTURE_STEPS = 200


def stripes(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n uint8 images [n, 3, size, size] of two classes a person tells apart at a glance: vertical (0) or
    horizontal (1) stripes of a random period, phase and pair of opposite colours, with noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = []
    for label in labels:
        period = rng.integers(2, 5)
        pattern = np.tile((np.arange(size) + rng.integers(period)) % period < period / 2, (size, 1))
        colour = rng.integers(0, 256, 3)
        image = np.where((pattern.T if label else pattern)[..., None], colour, 255 - colour)
        images.append(np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), torch.from_numpy(labels[:, None])


def test_a_small_easy_set_is_trained_to_convergence_and_stops_on_its_plateau():
    """60 tiny training images (48 fit, 12 held out to stop on) and 60 test images. The former schedule,
    twelve epochs (12 steps), scored 0.62."""
    images, labels = stripes(120, 16, seed=0)
    classes = {"label": ["vertical", "horizontal"]}
    config = gist.GistConfig(eval_every=25, patience=4)
    net = gist.train(images[:60], labels[:60], classes, config)
    table = gist.accuracy(gist.predict(net, images[60:]), pd.DataFrame({"label": labels[60:, 0].numpy()}))
    assert table.accuracy[0] >= 0.9 and table.above_chance[0], table  # measured: 0.93
    steps = net.history[-1]["step"]
    assert 100 < steps < config.max_steps, net.history  # many passes over the 48 images, then stopped


def test_the_validation_split_is_seeded_stratified_and_disjoint():
    codes = np.stack([np.repeat([0, 1], [70, 30]), np.arange(100) % 3], axis=1)
    fit, held = gist.validation_split(codes, 0.2, seed=0)
    assert len(held) == 20 and sorted([*fit, *held]) == list(range(100))
    assert np.bincount(codes[held, 0]).tolist() == [14, 6]
    assert abs(np.bincount(codes[held, 1]) - 20 / 3).max() <= 1
    again, other = gist.validation_split(codes, 0.2, seed=0)[1], gist.validation_split(codes, 0.2, seed=1)[1]
    assert (again == held).all() and not (other == held).all()
    # At least 20 held out or a fifth, whichever is fewer; two always kept to fit.
    sizes = [len(gist.validation_split(np.zeros((n, 1)), 0.1, 0)[1]) for n in (2, 3, 10, 40, 150, 1000)]
    assert sizes == [0, 0, 2, 8, 20, 100]


def test_the_accuracy_has_a_bootstrap_interval_and_is_above_chance_only_beyond_it():
    truth = pd.DataFrame({"easy": np.arange(200) % 2, "hard": np.where(np.arange(200) < 20, np.arange(200) % 2, -1)})
    predicted = truth.copy()
    predicted.loc[:19, "easy"] = 1 - predicted.loc[:19, "easy"]  # 180 of 200 right
    predicted.loc[:8, "hard"] = 1 - predicted.loc[:8, "hard"]  # 11 of 20 right
    table = gist.accuracy(predicted, truth, resamples=2000, confidence=0.95, seed=0).set_index("head")
    assert list(table.columns) == ["n", "classes", "accuracy", "accuracy_low", "accuracy_high", "chance",
                                   "above_chance"]
    assert table.n.tolist() == [200, 20] and table.accuracy.tolist() == [0.9, 0.55]
    assert table.chance.tolist() == [0.5, 0.5]
    # The binomial interval: 0.9 ± 1.96 · √(0.9 · 0.1 / 200) = [0.858, 0.942].
    assert abs(table.accuracy_low["easy"] - 0.858) < 0.01 and abs(table.accuracy_high["easy"] - 0.942) < 0.01
    assert table.accuracy_low["hard"] < 0.5 < 0.55 < table.accuracy_high["hard"]
    assert table.above_chance.tolist() == [True, False]
    pd.testing.assert_frame_equal(table, gist.accuracy(predicted, truth, 2000, 0.95, 0).set_index("head"))


def test_a_label_of_one_image_is_left_out_of_the_label_scores_with_a_warning(tmp_path, caplog):
    root, rng = tmp_path / "folder", np.random.default_rng(0)
    for name, count, colour in (("red", 8, (220, 30, 30)), ("blue", 8, (30, 30, 220)), ("green", 1, (30, 220, 30))):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    with pytest.warns(UserWarning, match="label 'green' has 1 image"):  # formerly a refusal of the whole run
        check_folder(str(root))
    manifest = shards.write_shards(folder(str(root)), tmp_path / "shards", source="folder", size=16, channels=3,
                                   min_size=16, test_fraction=0.3, seed=0, samples_per_shard=100)
    green = manifest.key[manifest.label_name == "green"].item()
    with caplog.at_level(logging.WARNING):
        codes, classes = gist.gist_targets(manifest, hue_bins=6)
    # Formerly a third class of one image: learnt from it alone, or tested without ever being learnt.
    assert classes == {"label": ["blue", "red"]} and codes.label[green] == -1 and (codes.label >= 0).sum() == 16
    assert "1 label(s) of a single image left out of the label head: 'green'" in caplog.text
    caplog.clear()
    meta = manifest[manifest.status == "written"].reset_index(drop=True)
    factors = pd.DataFrame(index=meta.index)
    with caplog.at_level(logging.WARNING):
        targets = scores.semantic_targets(meta.label, factors)
    assert "label: 1 class(es) of a single image left out of the scores" in caplog.text
    lonely = (meta.key == green).to_numpy()
    assert targets["label"][lonely].isna().all() and targets["label"][~lonely].notna().all()
    x = rng.normal(size=(len(meta), 4)) + meta.label.to_numpy()[:, None]
    predictions = scores.probe_predictions(meta, x, factors)
    assert green not in set(predictions.key) and len(predictions) == (~lonely & (meta.split == "test")).sum()
    table = scores.cluster_score_table(rng.integers(0, 2, len(meta)), targets)
    assert set(table.metric) == {"nmi", "ami", "ari", "purity", "accuracy"}
    # Two labels, one of them lonely: nothing is left to classify, and gist says why.
    two = manifest[manifest.label_name != "blue"]
    with pytest.raises(ValueError, match="fewer than two classes"):
        gist.gist_targets(two, hue_bins=6)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Tiny synthetic shards (~960 train images of 16×16) and the classifier trained on them for 200 steps
    (measured: ~27 s on 2 busy cores)."""
    out = tmp_path_factory.mktemp("gist")
    manifest = shards.write_shards(synthetic(1200, 0, 16), out, source="synthetic", size=16, channels=3, min_size=16,
                                   test_fraction=0.2, seed=0, samples_per_shard=200)
    truth, classes = gist.gist_targets(manifest, hue_bins=4)
    keys, images = gist.split_images(out, manifest, "train", None, seed=0)
    net = gist.train(images, torch.from_numpy(truth.loc[keys].to_numpy()), classes,
                     gist.GistConfig(max_steps=FIXTURE_STEPS, eval_every=25, patience=4, hue_bins=4))
    test_keys, test_images = gist.split_images(out, manifest, "test", None, seed=0)
    return net, truth, test_keys, test_images, manifest, out


def test_the_classifier_learns_background_and_foreground_well_above_chance(scenes):
    net, truth, keys, images, *_ = scenes
    table = gist.accuracy(gist.predict(net, images).set_axis(keys), truth.loc[keys]).set_index("head")
    assert set(table.index) == {"background", "foreground", "bg_hue", "fg_hue"}
    assert (table.chance < 0.4).all()
    assert table.accuracy["background"] > table.chance["background"] + 0.25, table  # measured: +0.44
    assert table.accuracy["foreground"] > table.chance["foreground"] + 0.15, table  # measured: +0.31


def test_split_images_takes_a_seeded_subset_of_one_split(scenes):
    *_, manifest, out = scenes
    keys, images = gist.split_images(out, manifest, "test", 10, seed=1)
    assert len(keys) == 10 and images.shape == (10, 3, 16, 16) and images.dtype == torch.uint8
    assert set(keys) <= set(manifest[manifest.split == "test"].key)
    assert keys == gist.split_images(out, manifest, "test", 10, seed=1)[0]


def test_a_saved_classifier_predicts_the_same(scenes, tmp_path):
    net, _, _, images, *_ = scenes
    net.save(tmp_path / "classifier.pt")
    loaded = gist.GistNet.load(tmp_path / "classifier.pt")
    assert loaded.classes == net.classes and loaded.config == net.config
    pd.testing.assert_frame_equal(gist.predict(loaded, images), gist.predict(net, images))
    np.testing.assert_array_equal(gist.features(loaded, images), gist.features(net, images))


def test_agreement_counts_the_conditioners_class(tmp_path):
    # Target 0 (key a): background 1, fg_hue 2. Target 1 (key b): background 0, no foreground.
    truth = pd.DataFrame({"background": [1, 0, 1, 1, 0], "fg_hue": [2, -1, 2, 0, -1]},
                         index=["a", "b", "r1", "r2", "r3"])
    labels = pd.Series([5, 6, 5, 5, 6], index=truth.index)
    samples = pd.DataFrame(dict(method=["self-guided"] * 2 + ["unconditional"] * 2 + ["self-guided"] * 2
                                + ["unconditional"] * 2, target=[0, 0, 0, 0, 1, 1, 1, 1], key=list("aaaabbbb")))
    predicted = pd.DataFrame({"background": [1, 1, 0, 3, 0, 2, 0, 0], "fg_hue": [2, 0, 2, 1, 1, 1, 1, 1]})
    real = pd.DataFrame({"background": [1, 0, 0, 0], "fg_hue": [2, 0, 0, 0]}, index=["r1", "r2", "r3", "a"])
    conditioners = pd.DataFrame({"background": [1, 3], "fg_hue": [0, 1]}, index=["a", "b"])
    table = gist.agreement(samples, predicted, truth, labels, real, conditioners, max_real=50)
    value = table.set_index(["target", "head", "measure"]).value
    n = table.set_index(["target", "head", "measure"]).n
    assert value[0, "background", "guided"] == 1.0 and value[0, "background", "unconditional"] == 0.0
    assert value[0, "fg_hue", "guided"] == 0.5 and value[0, "fg_hue", "unconditional"] == 0.5
    # Same label as a: r1, r2 (a itself excluded, r3 is another label).
    assert value[0, "background", "real_same_class"] == 0.5 and n[0, "background", "real_same_class"] == 2
    assert value[0, "fg_hue", "real_same_class"] == 0.5
    assert value[0, "background", "conditioner"] == 1.0 and value[0, "fg_hue", "conditioner"] == 0.0
    assert value[1, "background", "guided"] == 0.5 and value[1, "background", "unconditional"] == 1.0
    assert value[1, "background", "real_same_class"] == 1.0 and value[1, "background", "conditioner"] == 0.0
    assert (1, "fg_hue", "guided") not in value.index  # b has no foreground
    overall = table[table.target.isna()].set_index(["head", "measure"])
    assert overall.value["background", "guided"] == 0.75 and overall.n["background", "guided"] == 2
    assert overall.value["fg_hue", "guided"] == 0.5 and overall.n["fg_hue", "guided"] == 1
    assert gist.agreement(samples, predicted, truth, labels, real, conditioners, max_real=1).query(
        "target == 0 and measure == 'real_same_class'").n.eq(1).all()
    assert (table.n_failed == 0).all()
    gist.agreement_figure(table, tmp_path / "agreement.png")
    assert (tmp_path / "agreement.png").stat().st_size > 10_000


def test_failed_samples_are_left_out_of_the_agreement_and_counted():
    truth = pd.DataFrame({"background": [1, 0, 1]}, index=["a", "b", "r1"])
    labels = pd.Series([5, 6, 5], index=truth.index)
    samples = pd.DataFrame(dict(method=["self-guided"] * 3 + ["unconditional"] * 2 + ["self-guided"] * 2,
                                target=[0, 0, 0, 0, 0, 1, 1], key=list("aaaaabb"),
                                failed=[False, True, False, True, False, True, True]))
    # Target 0: guided right, wrong (failed: its last finite image), right; unconditional wrong (failed), wrong.
    predicted = pd.DataFrame({"background": [1, 0, 1, 0, 0, 0, 0]})
    real = pd.DataFrame({"background": [1]}, index=["r1"])
    conditioners = pd.DataFrame({"background": [1, 0]}, index=["a", "b"])
    table = gist.agreement(samples, predicted, truth, labels, real, conditioners)
    assert list(table.columns) == ["target", "key", "head", "measure", "value", "n", "n_failed"]
    rows = table.set_index(["target", "measure"])
    assert rows.value[0, "guided"] == 1.0 and rows.n[0, "guided"] == 2 and rows.n_failed[0, "guided"] == 1
    assert rows.value[0, "unconditional"] == 0.0 and rows.n[0, "unconditional"] == 1
    assert rows.n_failed[0, "unconditional"] == 1
    assert rows.n_failed[0, "real_same_class"] == 0 and rows.n_failed[0, "conditioner"] == 0
    # Every sample of target 1 failed: no share, and nothing counted for it in the overall row.
    assert np.isnan(rows.value[1, "guided"]) and rows.n[1, "guided"] == 0 and rows.n_failed[1, "guided"] == 2
    assert rows.n[1, "unconditional"] == 0 and rows.n_failed[1, "unconditional"] == 0
    overall = table[table.target.isna()].set_index("measure")
    assert overall.value["guided"] == 1.0 and overall.n["guided"] == 1 and overall.n_failed["guided"] == 3
    assert overall.n["conditioner"] == 2 and overall.n_failed["unconditional"] == 1
    # Without the column (an older sample table) nothing is left out.
    plain = gist.agreement(samples.drop(columns="failed"), predicted, truth, labels, real, conditioners)
    assert plain.set_index(["target", "measure"]).n[0, "guided"] == 3 and (plain.n_failed == 0).all()


def test_mmd2_is_near_zero_for_one_distribution_and_positive_for_shifted_ones():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    assert abs(gist.mmd2(x, y)) < 0.02
    assert gist.mmd2(x, y + 0.5) > 0.2
    real = rng.normal(size=(200, 16))
    table = gist.kid({"same": x[:40], "shifted": x[:40] + 0.5}, real, subsets=5).set_index("set")
    assert table.kid["shifted"] > 10 * abs(table.kid["same"])
    assert table.kid["shifted"] > 10 * abs(table.kid["real (disjoint halves)"])
    assert table.n_real.tolist() == [40, 40, 40] and (table.kid_std > 0).all()
