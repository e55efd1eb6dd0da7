import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from semcore import scenes
from semcore.plan.checks import validated
from semcore.plan.inputs import declared_files
from semcore.plan.schema import ConfigError
from semcore.plan.sizes import source_images
from semcore.sources import UnusableImage, conform, folder, imagenet64, iter_items, mnist5k, patches, synthetic

from conftest import snakemake, write_config


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


def image_folders(root):
    """Two folders of real image files: 40×30 greyscale PNGs and a file that is none, and 64×64 RGB JPEGs
    in a class sub-folder (which a mixture's label replaces)."""
    rng = np.random.default_rng(0)
    grey, colour = root / "grey", root / "colour"
    grey.mkdir(parents=True)
    (colour / "cats").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8)).save(grey / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(colour / "cats" / f"{i}.jpg")
    (grey / "1_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")  # sorts third, after 1.png
    return grey, colour


def mixture_parts(grey, colour, max_images=(None, None, None)):
    """Parts of the two folders and of four synthetic scenes, their options given in full (as the workflow
    fills them in)."""
    parts = [{"name": "grey", "source": "folder", "path": str(grey)},
             {"name": "colour", "source": "folder", "path": str(colour)},
             {"name": "scenes", "source": "synthetic", "n_images": 4, "backgrounds": ["flat"], "foregrounds": ["disk"]}]
    return [part | {"max_images": n} for part, n in zip(parts, max_images)]


def test_a_mixture_labels_every_item_by_its_part_and_every_image_conforms(tmp_path):
    grey, colour = image_folders(tmp_path)
    items = list(iter_items("mixture", {"parts": mixture_parts(grey, colour)}, size=16, seed=0))
    assert [item.label_name for item in items] == ["grey"] * 4 + ["colour"] * 3 + ["scenes"] * 4
    assert [item.label for item in items] == [0] * 4 + [1] * 3 + [2] * 4
    assert all(item.key.startswith(f"{item.label_name}/") and "." not in item.key for item in items)
    assert len({item.key for item in items}) == len(items)
    scenes = [f"scenes/{item.key}" for item in synthetic(4, 0, 16, ["flat"], ["disk"])]
    assert [item.key for item in items[7:]] == scenes
    assert all(item.factors == {} for item in items)  # the scenes' factors and the sub-folder labels are dropped
    broken = items[2]
    assert broken.origin.endswith("1_broken.png") and broken.image is None and broken.error  # the manifest's reason
    usable = [item for item in items if item.error is None]
    assert len(usable) == 10 and {item.image.mode for item in usable} == {"L", "RGB"}
    assert {item.image.size for item in usable} == {(40, 30), (64, 64), (16, 16)}
    for item in usable:
        for channels in (1, 3):
            assert conform(item.image, 16, channels, 16)[0].shape == (16, 16, channels)


def test_a_mixture_takes_the_first_max_images_of_each_part_usable_or_not(tmp_path):
    grey, colour = image_folders(tmp_path)
    everything = list(iter_items("mixture", {"parts": mixture_parts(grey, colour)}, size=16, seed=0))
    items = list(iter_items("mixture", {"parts": mixture_parts(grey, colour, (3, 1, 2))}, size=16, seed=0))
    assert [item.key for item in items] == [item.key for item in everything[:3] + everything[4:5] + everything[7:9]]
    assert [item.error is None for item in items[:3]] == [True, True, False]  # the broken file counts


SCENES = {"name": "scenes", "source": "synthetic", "n_images": 20}


@pytest.mark.parametrize(("parts", "message"), [
    ([SCENES, {"name": "files", "source": "folder"}], "data.mixture.parts[1].path: give the directory of images"),
    ([SCENES, {"name": "files", "source": "folder", "path": "/nowhere"}],
     "data.mixture.parts[1].path: '/nowhere' does not exist"),
    ([SCENES, {"name": "files", "source": "folder", "pth": "/x"}],
     "data.mixture.parts[1]: unknown key 'pth' (did you mean 'path'?)"),
    ([SCENES, SCENES], "data.mixture.parts[1].name: 'scenes' is the name of parts[0] too"),
    ([SCENES, {"name": "x", "source": "nope"}],
     'data.mixture.parts[1].source: must be one of synthetic, mnist5k, patches, folder, imagenet64, got "nope"'),
    ([SCENES, {"name": "in", "source": "imagenet64", "paths": ["/no.npz"]}],
     "data.mixture.parts[1].paths: not found: ['/no.npz']"),
    ([SCENES, {"name": "crops", "source": "patches", "crop_min": 4, "crop_max": 8}],
     "data.mixture.parts[1].crop_max: 8 is below data.min_size 16"),
    ([SCENES], "data.mixture.parts: must be a list (at least 2 items"),
    (None, "data.mixture.parts: list the parts"),
    ([SCENES | {"max_images": 2}, SCENES | {"name": "more", "max_images": 1}],
     "cluster.ks: k=4 is more than the 3 images of data.source mixture"),
])
def test_a_bad_mixture_is_refused_naming_the_key(tiny_config, parts, message):
    tiny_config["data"] |= {"source": "mixture", "mixture": {} if parts is None else {"parts": parts}}
    with pytest.raises(ConfigError) as refused:
        validated(tiny_config)
    assert message in str(refused.value)


def test_a_mixtures_parts_take_their_sources_defaults_and_are_counted_and_declared(tmp_path, tiny_config):
    grey, _ = image_folders(tmp_path)
    batch = imagenet64_batch(tmp_path / "batch_1.npz")  # two images
    parts = [{"name": "grey", "source": "folder", "path": str(grey)}, SCENES | {"max_images": 5},
             {"name": "imagenet", "source": "imagenet64", "paths": [batch]}]
    tiny_config["data"] |= {"source": "mixture", "mixture": {"parts": parts}}
    data = validated(tiny_config)["data"]
    assert data["mixture"]["parts"][1]["backgrounds"] == list(scenes.BACKGROUNDS)
    assert source_images(data) is None  # ImageNet64's batches are not opened to plan
    assert source_images(data, open_batches=True) == 4 + 5 + 2
    data["mixture"]["parts"][2]["max_images"] = 1
    assert source_images(data) == 4 + 5 + 1
    assert declared_files("mixture", data["mixture"]) == [*map(str, sorted(grey.iterdir())), batch]


def test_the_workflow_shards_a_mixture_accounting_for_every_input(tmp_path, tiny_config):
    grey, colour = image_folders(tmp_path / "images")
    tiny_config["data"] |= {"source": "mixture", "mixture": {"parts": [
        SCENES, {"name": "grey", "source": "folder", "path": str(grey)},
        {"name": "colour", "source": "folder", "path": str(colour)}]}}
    write_config(tmp_path, tiny_config)
    snakemake(tmp_path, "results/tiny/manifest.parquet")
    manifest = pd.read_parquet(tmp_path / "results" / "tiny" / "manifest.parquet")
    assert manifest.groupby("label_name").label.unique().map(list).to_dict() == {
        "scenes": [0], "grey": [1], "colour": [2]}
    assert manifest.label_name.value_counts().to_dict() == {"scenes": 20, "grey": 4, "colour": 3}
    assert (manifest.key.str.split("/").str[0] == manifest.label_name).all()
    skipped = manifest[manifest.status == "skipped"]
    assert skipped.origin.str.endswith("1_broken.png").tolist() == [True] and skipped.reason.notna().all()
