"""Images as PNG bytes, the form shards and tables keep them in: no torch, so data-only jobs need none."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(pixels) -> bytes:
    """H×W×C uint8 → PNG bytes (grey for one channel)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes → H×W×C uint8 (a grey image keeps a channel axis). Only the PNG decoder is tried: bytes
    of another format are refused, never decoded."""
    image = np.asarray(Image.open(io.BytesIO(data), formats=["PNG"]))
    return image[..., None] if image.ndim == 2 else image
