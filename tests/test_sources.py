import re

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
    assert conform(wide, 32, 3, 32)[0].shape == (32, 32, 3)
    assert conform(wide, 32, 1, 32)[0].shape == (32, 32, 1)
    assert conform(wide.convert("P"), 16, 3, 16)[0].dtype == np.uint8
    assert conform(wide.convert("CMYK"), 16, 3, 16)[1] == []
    huge = Image.new("RGB", (4000, 3000), "red")
    assert conform(huge, 16, 3, 16)[0][8, 8].tolist() == [255, 0, 0]


def test_conform_rejects_small_and_32_bit_images():
    with pytest.raises(UnusableImage, match=r"too small \(< data.min_size 32\): 20x40"):
        conform(Image.new("RGB", (20, 40)), 32, 3, 32)
    with pytest.raises(UnusableImage, match=r"mode 'F' \(32-bit float\)"):
        conform(Image.new("F", (64, 64)), 32, 3, 32)
    with pytest.raises(UnusableImage, match=r"mode 'I' \(32-bit integer\)"):
        conform(Image.new("I", (64, 64)), 32, 3, 32)


@pytest.mark.parametrize(("mode", "dtype"), [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2")])
def test_conform_scales_16_bit_grey_over_its_full_range(mode, dtype):
    grey = np.array([[0, 32768, 65535, 65535]] * 4).astype(dtype)
    image = Image.frombytes(mode, (4, 4), grey.tobytes())
    pixels, transforms = conform(image, 4, 1, 4)
    assert pixels[0, :, 0].tolist() == [0, 128, 255, 255] and transforms == ["16-bit scaled to 8-bit"]


def black_with_a_corner(mode: str, transparent: bool) -> Image.Image:
    """A black 4×4 image whose top-left pixel is transparent, or not."""
    if mode == "P":
        image = Image.new("P", (4, 4), 1)
        image.putpalette([0, 0, 0] * 2)
        image.putpixel((0, 0), 0)
        if transparent:
            image.info["transparency"] = 0  # a transparent palette entry
        return image
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0 if transparent else 255))
    return image.convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P"])
def test_conform_flattens_transparency_onto_white(mode):
    pixels, transforms = conform(black_with_a_corner(mode, transparent=True), 4, 3, 4)
    assert pixels[0, 0].tolist() == [255, 255, 255] and pixels[3, 3].tolist() == [0, 0, 0]
    assert transforms == ["alpha flattened onto white"]
    pixels, transforms = conform(black_with_a_corner(mode, transparent=False), 4, 3, 4)
    assert pixels[0, 0].tolist() == [0, 0, 0] and transforms == []  # opaque: nothing to flatten


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


def imagenet64_batch(path, **arrays):
    """A batch of two 8×8 images, with `arrays` replacing its own (None: left out)."""
    arrays = {"data": np.zeros((2, 3 * 8 * 8), dtype=np.uint8), "labels": np.array([1, 1000])} | arrays
    np.savez(path, **{name: value for name, value in arrays.items() if value is not None})
    return str(path)


@pytest.mark.parametrize(("arrays", "message"), [
    (dict(labels=None), r"has the arrays \['data'\]; a batch has 'data' and 'labels'"),
    (dict(data=np.zeros((2, 192), dtype=np.float32)), r"'data' is float32 of shape \(2, 192\); allowed is uint8"),
    (dict(data=np.zeros((2, 3, 64), dtype=np.uint8)), r"'data' is uint8 of shape \(2, 3, 64\)"),
    (dict(data=np.zeros((2, 100), dtype=np.uint8)), r"'data' is uint8 of shape \(2, 100\)"),
    (dict(labels=np.array([[1, 2]])), r"'labels' is int64 of shape \(1, 2\); allowed are integers of shape \(2,\)"),
    (dict(labels=np.array([1.0, 2.0])), r"'labels' is float64"),
    (dict(labels=np.array([1, 2, 3])), r"'labels' is int64 of shape \(3,\)"),
    (dict(labels=np.array([0, 5])), r"'labels' holds 0; allowed are ImageNet's 1..1000"),
    (dict(labels=np.array([5, 1001])), r"'labels' holds 1001"),
    (dict(labels=np.array([1, {"code": "pickled"}], dtype=object)),  # np.load must not unpickle it
     r"not a readable .npz batch \(ValueError: Object arrays cannot be loaded when allow_pickle=False"),
])
def test_imagenet64_refuses_a_bad_batch_naming_it(tmp_path, arrays, message):
    path = imagenet64_batch(tmp_path / "batch_1.npz", **arrays)
    with pytest.raises(ValueError, match=f"data.imagenet64.paths: {re.escape(path)}: {message}"):
        list(imagenet64([path]))


def test_imagenet64_refuses_a_file_that_is_not_an_npz(tmp_path):
    for name, content in (("text.npz", b"not numpy at all"), ("empty.npz", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"data.imagenet64.paths: {tmp_path / name}: not a readable .npz batch"):
            list(imagenet64([str(tmp_path / name)]))
    np.save(tmp_path / "plain.npy", np.zeros(3))  # an array, not a batch of them
    with pytest.raises(ValueError, match="plain.npy: not a readable .npz batch"):
        list(imagenet64([str(tmp_path / "plain.npy")]))


def test_iter_items_names_the_bad_key():
    with pytest.raises(ValueError, match="data.source"):
        iter_items("nope", {}, size=32, seed=0)
