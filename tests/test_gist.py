import json

import numpy as np
import pandas as pd
import pytest
import torch

from semcore import gist, shards
from semcore.sources import synthetic


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
                            dict(key="c", label=3, label_name="three"), dict(key="d", label=-1)], source="folder")
    codes, classes = gist.gist_targets(manifest, hue_bins=6)
    assert classes == {"label": ["three", "seven"]}
    assert codes.label.tolist() == [0, 1, 0, -1]
    # The network takes grayscale images of the smallest size, also with a last batch of one image.
    images = torch.randint(0, 256, (9, 1, 8, 8), dtype=torch.uint8)
    net = gist.train(images, torch.tensor([[0], [1], [0], [-1], [1], [0], [1], [0], [1]]), classes,
                     gist.GistConfig(epochs=1, batch_size=4))
    assert gist.predict(net, images).shape == (9, 1) and gist.features(net, images).shape == (9, 16 * 16)


def test_a_source_of_one_class_is_refused_with_the_reason():
    manifest = manifest_of([dict(key=k, label=2, label_name="two") for k in "abc"], source="mnist5k")
    with pytest.raises(ValueError, match="'mnist5k' images have fewer than two classes"):
        gist.gist_targets(manifest, hue_bins=6)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Tiny synthetic shards (~960 train images of 16×16) and the classifier trained on them: ~6 s."""
    out = tmp_path_factory.mktemp("gist")
    manifest = shards.write_shards(synthetic(1200, 0, 16), out, source="synthetic", size=16, channels=3, min_size=16,
                                   test_fraction=0.2, seed=0, samples_per_shard=200)
    truth, classes = gist.gist_targets(manifest, hue_bins=4)
    keys, images = gist.split_images(out, manifest, "train", None, seed=0)
    net = gist.train(images, torch.from_numpy(truth.loc[keys].to_numpy()), classes,
                     gist.GistConfig(epochs=20, hue_bins=4))
    test_keys, test_images = gist.split_images(out, manifest, "test", None, seed=0)
    return net, truth, test_keys, test_images, manifest, out


def test_the_classifier_learns_background_and_foreground_well_above_chance(scenes):
    net, truth, keys, images, *_ = scenes
    table = gist.accuracy(gist.predict(net, images).set_axis(keys), truth.loc[keys]).set_index("head")
    assert set(table.index) == {"background", "foreground", "bg_hue", "fg_hue"}
    assert (table.chance < 0.4).all()
    assert table.accuracy["background"] > table.chance["background"] + 0.25, table  # measured: +0.42
    assert table.accuracy["foreground"] > table.chance["foreground"] + 0.15, table  # measured: +0.29


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
    gist.agreement_figure(table, tmp_path / "agreement.png")
    assert (tmp_path / "agreement.png").stat().st_size > 10_000


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
