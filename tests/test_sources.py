import numpy as np
import pytest
from PIL import Image

from semcore import scenes
from semcore.sources import UnusableImage, conform, folder, imagenet64, iter_items, mnist5k, patches, synthetic


def test_scenes_are_a_pure_function_of_seed_and_index():
    a, label_a, factors_a = scenes.render(3, 17, 32)
    b, label_b, factors_b = scenes.render(3, 17, 32)
    assert np.array_equal(a, b) and label_a == label_b and factors_a == factors_b
    assert not np.array_equal(a, scenes.render(4, 17, 32)[0])


def test_synthetic_covers_every_background_and_foreground_with_factors():
    items = list(synthetic(400, seed=0, size=24))
    assert len({item.key for item in items}) == 400
    pairs = {(item.factors["background"], item.factors["foreground"]) for item in items}
    assert pairs == {(b, f) for b in scenes.BACKGROUNDS for f in scenes.FOREGROUNDS}
    for item in items:
        assert item.label_name == f"{item.factors['background']}/{item.factors['foreground']}"
        assert np.asarray(item.image).shape == (24, 24, 3)
        if item.factors["foreground"] != "none":
            assert {"fg_x", "fg_y", "fg_scale", "fg_hue"} <= set(item.factors)


def test_conform_crops_resizes_and_converts():
    wide = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 80, 3), dtype=np.uint8))
    assert conform(wide, 32, 3, 32).shape == (32, 32, 3)
    assert conform(wide, 32, 1, 32).shape == (32, 32, 1)
    assert conform(wide.convert("P"), 16, 3, 16).dtype == np.uint8


def test_conform_rejects_small_and_16_bit_images():
    with pytest.raises(UnusableImage, match="too small"):
        conform(Image.new("RGB", (20, 40)), 32, 3, 32)
    with pytest.raises(UnusableImage, match="mode 'I;16'"):
        conform(Image.new("I;16", (64, 64)), 32, 3, 32)


def test_mnist5k_is_the_real_bundled_digits():
    items = list(mnist5k())
    assert len(items) == 5000
    assert sorted({item.label for item in items}) == list(range(10))
    assert np.asarray(items[0].image).shape == (28, 28)
    assert np.asarray(items[0].image).max() > 200  # real strokes, not a blank stand-in


def test_patches_are_labelled_by_photograph():
    items = list(patches(3, crop_min=40, crop_max=60, images=["astronaut", "brick"], seed=0))
    assert [item.label_name for item in items] == ["astronaut"] * 3 + ["brick"] * 3
    assert all(40 <= item.factors["side"] <= 60 for item in items)
    with pytest.raises(ValueError, match="unknown"):
        list(patches(1, 40, 60, ["not_a_photo"], seed=0))


def test_folder_labels_from_subfolders_and_reports_unreadable_files(tmp_path):
    (tmp_path / "cats").mkdir()
    Image.new("RGB", (40, 40), "red").save(tmp_path / "cats" / "a.png")
    Image.new("RGB", (40, 40), "blue").save(tmp_path / "top.jpg")
    (tmp_path / "cats" / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    items = {item.origin.split("/")[-1]: item for item in folder(str(tmp_path))}
    assert items["a.png"].label_name == "cats" and items["a.png"].label == 0 and items["a.png"].error is None
    assert items["top.jpg"].label == -1 and items["top.jpg"].error is None
    assert items["empty.png"].error == "empty file (0 bytes)"
    assert items["notes.txt"].error.startswith("not an image")


def test_imagenet64_reads_planar_rgb_and_one_based_labels(tmp_path):
    pixels = np.zeros((2, 3 * 8 * 8), dtype=np.uint8)
    pixels[0, : 8 * 8] = 255  # image 0: a red plane
    np.savez(tmp_path / "batch_1.npz", data=pixels, labels=np.array([1, 1000]))
    items = list(imagenet64([str(tmp_path / "batch_1.npz")]))
    assert [item.label for item in items] == [0, 999]
    assert np.asarray(items[0].image)[0, 0].tolist() == [255, 0, 0]


def test_iter_items_names_the_bad_key():
    with pytest.raises(ValueError, match="data.source"):
        iter_items("nope", {}, size=32, seed=0)
