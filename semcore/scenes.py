"""Procedural colour scenes with known generative factors: the ground truth for selectivity checks.

A scene is a background (flat, horizon gradient, lattice of dots, oriented stripes) with an optional
foreground shape (disk, square, triangle, ring) of random colour, position, scale and rotation.
Each scene is a pure function of (seed, index), so any subset can be regenerated in any order.
"""

from __future__ import annotations

import colorsys

import numpy as np

BACKGROUNDS = ("flat", "gradient", "lattice", "stripes")
FOREGROUNDS = ("none", "disk", "square", "triangle", "ring")
SUPERSAMPLE = 4  # render at 4x and average down: anti-aliased edges


def class_names(backgrounds=BACKGROUNDS, foregrounds=FOREGROUNDS) -> list[str]:
    """Class label i names the (background, foreground) pair i = b * len(foregrounds) + f."""
    return [f"{b}/{f}" for b in backgrounds for f in foregrounds]


def _colour(rng: np.random.Generator, saturation=(0.3, 1.0), value=(0.2, 1.0)) -> tuple[np.ndarray, float]:
    hue = rng.uniform()
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value))
    return np.array(rgb, dtype=np.float32), float(hue)


def _background(kind: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator):
    """Returns an H×W×3 float image and the factors that made it."""
    c1, hue1 = _colour(rng)
    c2, hue2 = _colour(rng)
    factors = {"bg_hue": hue1, "bg_hue2": hue2}
    if kind == "flat":
        weight = np.zeros_like(u)
        factors["bg_hue2"] = None
    elif kind == "gradient":
        horizon = rng.uniform(0.3, 0.7)
        weight = np.clip(v / horizon, 0.0, 1.0)  # sky fades c1 → c2 down to the horizon, ground is c2
        factors["horizon"] = float(horizon)
    elif kind == "lattice":
        period = rng.uniform(0.12, 0.25)
        phase = rng.uniform(0, period, size=2)
        du = np.mod(u - phase[0], period) - period / 2
        dv = np.mod(v - phase[1], period) - period / 2
        weight = (du**2 + dv**2 < (0.28 * period) ** 2).astype(np.float32)
        factors["period"] = float(period)
    elif kind == "stripes":
        period = rng.uniform(0.1, 0.25)
        angle = rng.uniform(0, np.pi)
        along = u * np.cos(angle) + v * np.sin(angle)
        weight = (np.mod(along + rng.uniform(0, period), period) < period / 2).astype(np.float32)
        factors.update(period=float(period), orientation=float(np.degrees(angle)))
    else:
        raise ValueError(f"unknown background {kind!r}; choose from {BACKGROUNDS}")
    image = (1 - weight)[..., None] * c1 + weight[..., None] * c2
    return image, factors


def _shape_mask(kind: str, u, v, cx, cy, scale, angle) -> np.ndarray:
    # Coordinates relative to the shape's centre, rotated into its own frame.
    du, dv = u - cx, v - cy
    x = du * np.cos(angle) + dv * np.sin(angle)
    y = -du * np.sin(angle) + dv * np.cos(angle)
    radius = np.sqrt(x**2 + y**2)
    if kind == "disk":
        return radius < scale
    if kind == "ring":
        return (radius < scale) & (radius > 0.6 * scale)
    if kind == "square":
        return (np.abs(x) < 0.8 * scale) & (np.abs(y) < 0.8 * scale)
    if kind == "triangle":
        # Equilateral triangle of circumradius `scale`: inside all three edge half-planes.
        normals = np.array([90.0, 210.0, 330.0]) * np.pi / 180
        inside = [x * np.cos(a) + y * np.sin(a) < scale / 2 for a in normals]
        return inside[0] & inside[1] & inside[2]
    raise ValueError(f"unknown foreground {kind!r}; choose from {FOREGROUNDS}")


def render(seed: int, index: int, size: int, backgrounds=BACKGROUNDS,
           foregrounds=FOREGROUNDS) -> tuple[np.ndarray, int, dict]:
    """Scene `index` of the family `seed` drawn from these kinds: (uint8 size×size×3 image, class label,
    factors)."""
    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(len(backgrounds) * len(foregrounds)))
    bg, fg = backgrounds[label // len(foregrounds)], foregrounds[label % len(foregrounds)]

    n = size * SUPERSAMPLE
    v, u = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
    image, factors = _background(bg, u, v, rng)
    factors = {"background": bg, "foreground": fg, **factors}

    if fg != "none":
        colour, hue = _colour(rng, saturation=(0.5, 1.0), value=(0.5, 1.0))
        cx, cy = rng.uniform(0.3, 0.7, size=2)
        scale = rng.uniform(0.12, 0.28)
        angle = rng.uniform(0, 2 * np.pi)
        mask = _shape_mask(fg, u, v, cx, cy, scale, angle)
        image[mask] = colour
        factors.update(fg_hue=hue, fg_x=float(cx), fg_y=float(cy), fg_scale=float(scale),
                       fg_angle=float(np.degrees(angle)))

    image = image.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.round(image * 255).astype(np.uint8), label, factors
