"""A messy folder, as researchers have them: every file is accounted for in the manifest, written or skipped
with its reason, and nothing crashes. The corpus is generated here; nothing binary is checked in."""
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, PngImagePlugin

from semcore import shards
from semcore.plan.inputs import check_folder, input_files
from semcore.sources import conform, folder
from semcore.tables import MANIFEST, write_table

OPTIONS = dict(source="folder", size=16, channels=3, min_size=16, test_fraction=0.25, seed=0, samples_per_shard=8)
NOBODY = 65534


def noise(seed: int, size=(40, 40), mode="RGB") -> Image.Image:
    """A distinct image per seed (identical bytes would be duplicates)."""
    return Image.frombytes(mode, size, np.random.default_rng(seed).bytes(size[0] * size[1] * len(mode)))


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width×height pixels and holds none: Pillow sizes images at open."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def pillow_error(data: bytes) -> str:
    """What Pillow says decoding these bytes (its words vary with the version)."""
    with pytest.raises(OSError) as error:
        Image.open(io.BytesIO(data)).load()
    return str(error.value)


def key_of(relative: bytes) -> str:
    return "file_" + hashlib.blake2b(relative, digest_size=8).hexdigest()


def make_corpus(images: Path) -> dict[str, tuple[str, str | None, str | None, str]]:
    """Writes the corpus; {relative path as the manifest prints it: (status, reason, transforms, label_name)}."""
    expected = {}

    def add(relative: str | bytes, content: bytes | Image.Image | None, status="written", reason=None,
            transforms=None, label=None, **save_options):
        path = images / os.fsdecode(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Image.Image):
            content.save(path, **save_options)
        elif content is not None:
            path.write_bytes(content)
        printable = os.fsencode(relative).decode("utf-8", "backslashreplace")
        parts = printable.split("/")
        label = label if label is not None else (parts[0] if len(parts) > 1 else "")
        expected[printable] = (status, reason, transforms, label)
        return path

    add("cats/a.png", noise(1))
    add("cats/b.jpg", noise(2))
    rgba = noise(3, mode="RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    add("cats/rgba.png", rgba, transforms="alpha flattened onto white")
    palette = noise(4, mode="L").convert("P")
    add("cats/palette.png", palette, transforms="alpha flattened onto white",
        transparency=int(palette.getpixel((0, 0))))
    add("cats/grey.png", noise(5, mode="L"))
    deep = np.linspace(0, 65535, 40 * 40).astype(np.uint16).reshape(40, 40)
    add("cats/deep.png", Image.fromarray(deep), transforms="16-bit scaled to 8-bit")
    add("cats/cmyk.jpg", noise(6, mode="CMYK"))
    gradient = np.broadcast_to(np.linspace(0, 255, 3000).astype(np.uint8)[None, :, None], (2000, 3000, 3))
    add("cats/big.jpg", Image.fromarray(np.ascontiguousarray(gradient)))  # far larger than the 16×16 crop
    turned = np.zeros((24, 40, 3), np.uint8)
    turned[:, :20], turned[:, 20:] = (255, 0, 0), (0, 0, 255)  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # to be shown turned 90° clockwise: red on top
    add("cats/rotated.jpg", Image.fromarray(turned), transforms="exif orientation 6: turned upright", exif=exif)
    add("cats/tiny.png", noise(7, size=(1, 1)), "skipped", "too small (< data.min_size 16): 1x1")
    add("cats/z_copy.png", (images / "cats" / "a.png").read_bytes(), "skipped",
        f"duplicate of {key_of(b'cats/a.png')} ({images}/cats/a.png)")
    add("cats/.DS_Store", b"\x00\x01", "skipped", "hidden file")
    add("cats/float.tif", Image.new("F", (40, 40), 0.5), "skipped",
        "unsupported image mode 'F' (32-bit float): save it as 8- or 16-bit; allowed are ['1', 'CMYK', 'HSV', "
        "'I;16', 'I;16B', 'I;16L', 'L', 'LA', 'LAB', 'P', 'PA', 'RGB', 'RGBA', 'RGBX', 'YCbCr']")
    (images / "cats" / "back").symlink_to("..")  # a folder loop: not walked twice, not an entry

    add("café/ünïcode 图.png", noise(8))
    add("café/second.png", noise(9))
    add(b"\xfe dir/inside.png", noise(10))  # a folder name that is not UTF-8: its label is printable
    add(b"\xfe dir/other.png", noise(11))
    add(b"\xff.png", noise(12))

    elsewhere = images.parent / "elsewhere"
    elsewhere.mkdir()
    noise(13).save(elsewhere / "one.png")
    noise(14).save(elsewhere / "two.png")
    (images / "linked").symlink_to(elsewhere)  # a symlinked folder of images: followed
    expected |= {f"linked/{name}": ("written", None, None, "linked") for name in ("one.png", "two.png")}
    (images / "alias").symlink_to("cats")  # the same folder again: walked once, under its real name

    add("zero.jpg", b"", "skipped", "empty file (0 bytes)")
    add("text.jpg", b"field notes, not a photograph\n", "skipped", "not an image (unrecognised format)")
    png, jpeg = encoded(noise(15), "PNG"), encoded(noise(16), "JPEG")
    for name, data in (("truncated.png", png[: len(png) // 2]), ("truncated.jpg", jpeg[: len(jpeg) // 2])):
        add(name, data, "skipped", f"unreadable image (truncated or corrupt): {pillow_error(data)}")
    limit = Image.MAX_IMAGE_PIXELS
    add("bomb.png", png_header(10_000, 10_000), "skipped",  # over the limit: Pillow's warning, made an error
        f"decompression bomb: 100000000 pixels > Pillow's limit {limit}")
    add("bomb_huge.png", png_header(100_000, 100_000), "skipped",  # over twice the limit: Pillow's error
        f"decompression bomb: 10000000000 pixels > Pillow's limit {limit}")
    add("int32.tif", Image.new("I", (40, 40), 70_000), "skipped",
        expected["cats/float.tif"][1].replace("'F' (32-bit float)", "'I' (32-bit integer)"))

    add("broken.png", None, "skipped", "broken symlink").symlink_to("missing.png")
    add("loop_a.png", None, "skipped", "symlink loop").symlink_to("loop_b.png")
    add("loop_b.png", None, "skipped", "symlink loop").symlink_to("loop_a.png")
    os.mkfifo(add("pipe.png", None, "skipped", "not a regular file: a named pipe"))
    add("unreadable.png", noise(17), "skipped", "permission denied").chmod(0)
    (images / "locked").mkdir()
    noise(18).save(images / "locked" / "inside.png")
    (images / "locked").chmod(0)  # its files cannot be listed: the folder itself is the entry
    add("locked", None, "skipped", "not a regular file: a folder that could not be listed")

    add(".hidden.png", noise(19), "skipped", "hidden file")
    add(".cache/x.png", noise(20), "skipped", "in hidden folder .cache", label="")
    add(".cache/deeper/y.png", noise(21), "skipped", "in hidden folder .cache", label="")
    return expected


@pytest.fixture
def shared_tmp():
    """A temporary folder user 65534 can read (pytest's tmp_path is its owner's alone)."""
    path = Path(tempfile.mkdtemp())
    path.chmod(0o755)
    yield path
    for locked in path.glob("*/locked"):
        locked.chmod(0o755)
    shutil.rmtree(path)


def shard_unprivileged(images: Path, out: Path) -> None:
    """folder + write_shards + the manifest, as a user that chmod 000 stops: root reads anything."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    write_table(shards.write_shards(folder(str(images)), out, **OPTIONS), out / "manifest.parquet", MANIFEST)


def test_every_file_of_a_messy_folder_is_written_or_skipped_with_its_reason(shared_tmp):
    images, out = shared_tmp / "images", shared_tmp / "out"
    expected = make_corpus(images)
    out.mkdir()
    out.chmod(0o777)  # writable by user 65534
    # A forked process: it drops root for its own, and needs no interpreter that user 65534 can run.
    process = multiprocessing.get_context("fork").Process(target=shard_unprivileged, args=(images, out))
    process.start()
    process.join()
    assert process.exitcode == 0  # the child's traceback is on stderr

    manifest = pd.read_parquet(out / "manifest.parquet")
    assert list(manifest.columns) == ["key", "origin", "label", "label_name", "source", "split", "shard", "status",
                                      "reason", "factors", "transforms", "duplicate_of"]
    manifest.index = manifest.origin.str.removeprefix(f"{images}/")
    assert len(manifest) == len(expected) and set(manifest.index) == set(expected)
    columns = manifest[["status", "reason", "transforms", "label_name"]]
    rows = columns.astype(object).where(columns.notna(), None).itertuples(index=False, name=None)  # NaN → None
    found = dict(zip(manifest.index, rows))
    assert found == expected
    assert manifest.key.str.fullmatch(r"file_[0-9a-f]{16}").all()  # no "." for WebDataset to cut at
    assert manifest.loc["cats/z_copy.png", "duplicate_of"] == manifest.loc["cats/a.png", "key"]
    assert manifest.duplicate_of.notna().sum() == 1
    labels = manifest[manifest.label_name != ""].groupby("label_name").label.unique().map(list).to_dict()
    assert labels == {"\\xfe dir": [0], "café": [1], "cats": [2], "linked": [3]}  # no hidden folder, no alias
    assert (manifest[manifest.label_name == ""].label == -1).all()

    written = manifest[manifest.status == "written"]
    assert set(written.split) == {"train", "test"}
    upright = shards.images_by_key(out, manifest, [manifest.loc["cats/rotated.jpg", "key"]])
    pixels = next(iter(upright.values())).astype(int)
    assert pixels[0, 0, 0] > 200 > pixels[-1, 0, 0] and pixels[-1, 0, 2] > 200  # red on top, blue below
    index = json.loads((out / "index.json").read_text())
    assert sum(entry["samples"] for entry in index.values()) == len(written)


def test_a_file_that_vanishes_between_listing_and_reading_is_reported(tmp_path):
    for seed, name in enumerate(("a.png", "b.png")):
        noise(seed).save(tmp_path / name)
    items = folder(str(tmp_path))
    assert next(items).error is None
    (tmp_path / "b.png").unlink()
    assert next(items).error == "vanished while reading"


def test_a_16_bit_png_that_older_pillow_opens_as_32_bit_is_scaled_as_16_bit(tmp_path, monkeypatch):
    Image.fromarray(np.array([[0, 65535]] * 4, dtype=np.uint16).repeat(2, axis=1)).save(tmp_path / "deep.png")
    monkeypatch.setitem(PngImagePlugin._MODES, (16, 0), ("I", "I;16B"))  # as older Pillow opens it
    (item,) = folder(str(tmp_path))
    pixels, transforms = conform(item.image, 4, 1, 4)
    assert pixels[0, :, 0].tolist() == [0, 0, 255, 255] and transforms == ["16-bit scaled to 8-bit"]


def test_adding_a_file_keeps_every_other_key_and_split(tmp_path):
    for i in range(12):
        (tmp_path / ("cats" if i % 2 else "dogs")).mkdir(exist_ok=True)
        noise(i).save(tmp_path / ("cats" if i % 2 else "dogs") / f"{i:02d}.png")

    def keys_and_splits():
        return {item.origin: (item.key, shards.split_of(item.key, 0, 0.5)) for item in folder(str(tmp_path))}

    before = keys_and_splits()
    noise(99).save(tmp_path / "cats" / "00_first.png")  # sorts before every other file of its folder
    after = keys_and_splits()
    assert len(after) == len(before) + 1
    assert {origin: after[origin] for origin in before} == before


def test_only_readable_regular_visible_files_are_declared_as_inputs(tmp_path):
    (tmp_path / "cats").mkdir()
    noise(0).save(tmp_path / "cats" / "a.png")
    (tmp_path / "cats" / "b.png").symlink_to("a.png")  # a symlink to a file is one
    (tmp_path / "broken.png").symlink_to("missing.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    assert [p.relative_to(tmp_path).as_posix() for p in input_files(tmp_path)] == ["cats/a.png", "cats/b.png"]


def test_check_folder_refuses_what_cannot_give_a_run(tmp_path):
    with pytest.raises(ValueError, match="data.folder.path: '.*/nowhere' does not exist"):
        check_folder(str(tmp_path / "nowhere"))
    (tmp_path / ".DS_Store").write_bytes(b"x")
    with pytest.raises(ValueError, match="holds no readable files"):
        check_folder(str(tmp_path))
    for name in ("cats/a.png", "cats/b.png", "dogs/a.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    with pytest.warns(UserWarning) as warned:  # a label of one image is left out of the label scores, not refused
        check_folder(str(tmp_path))
    assert str(warned[0].message) == ("data.folder.path: label 'dogs' has 1 image; the label scores and the gist "
                                      "classifier need ≥ 2 per label and leave it out: add images or remove the folder")
    (tmp_path / "dogs" / "b.png").write_bytes(b"b")
    check_folder(str(tmp_path))


def test_write_shards_says_why_no_image_could_be_used(tmp_path):
    for i in range(3):
        noise(i, size=(20, 20)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError) as refused:
        shards.write_shards(folder(str(tmp_path)), tmp_path / "out", **{**OPTIONS, "min_size": 32, "size": 32})
    assert str(refused.value) == ("data.folder: none of the 4 inputs could be used (see data.size / data.min_size and "
                                  "data.folder); skipped: 3 too small (< data.min_size 32), 1 not an image "
                                  "(unrecognised format)")
