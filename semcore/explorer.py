"""The φ explorer: one offline HTML page to look at a run's representation, or at a study's runs.

Built in steps, each a rule: every mapped image's exact nearest neighbours in each space
(semcore.cluster.neighbour_graph), its 2-D positions (semcore.embedding), a bundle of what the page shows
(bundle: φ quantised per channel, colourings, clusters, neighbours, thumbnails in sprite sheets, self-guided
samples: here), and the page (semcore.explorer_page).
"""

from __future__ import annotations

import base64
import gzip
import io
import json

import numpy as np
import pandas as pd
from PIL import Image

from semcore.figures import feature_set_name
from semcore.stats import active_channels

COLOURS = 20  # categories coloured (by count); the rest are "other", grey
SHEET_COLUMNS = 64  # thumbnails per row of a sprite sheet: 64 × 64 to a sheet
TOP_CHANNELS = 8  # an image's most active channels, shown as bars


def packed(array: np.ndarray) -> dict:
    """An array for the page: its dtype, shape and little-endian bytes, gzipped, in base64; the browser
    decodes and inflates them natively (DecompressionStream), never number by number. Sparse φ quantised
    to bytes shrinks several times."""
    array = np.ascontiguousarray(array, dtype=np.dtype(array.dtype).newbyteorder("<"))
    data = gzip.compress(array.tobytes(), compresslevel=6, mtime=0)
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": base64.b64encode(data).decode()}


def quantised(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [n, C]: φ as a fraction of each channel's largest value over the images, in 255ths; that
    largest value [C]). A dead channel is 0 throughout."""
    peak = phi.max(axis=0)
    scaled = np.divide(phi, peak, out=np.zeros_like(phi), where=peak > 0)
    return np.rint(np.clip(scaled, 0, 1) * 255).astype(np.uint8), peak


def categorical(name: str, values: pd.Series) -> dict:
    """A colouring by category: each image's category code and the names, most frequent first (the first
    COLOURS get colours, the rest are grey), with their counts."""
    counts = values.astype(str).value_counts(sort=True)
    codes = pd.Categorical(values.astype(str), categories=counts.index).codes
    return {"name": name, "kind": "category", "codes": packed(codes.astype(np.int32)), "names": counts.index.tolist(),
            "counts": counts.to_numpy().tolist()}


def numeric(name: str, values: np.ndarray) -> dict:
    return {"name": name, "kind": "number", "values": packed(np.asarray(values, dtype=np.float32))}


def factor_colourings(factors: pd.DataFrame) -> list[dict]:
    """One colouring per ground-truth factor: by category, or by value for a number with many values."""
    found = []
    for name, column in factors.items():
        many = pd.api.types.is_float_dtype(column) and column.nunique() > COLOURS
        found.append(numeric(f"factor: {name}", column) if many else categorical(f"factor: {name}", column))
    return found


def cluster_members(assignments: pd.DataFrame, members: int) -> np.ndarray:
    """[k, members] rows (in the mapped order; -1 past a cluster's size) of each cluster's members nearest
    its centroid, nearest first. `assignments` has a row column (the image's row on the map)."""
    k = int(assignments.cluster.max()) + 1
    table = np.full((k, members), -1, np.int32)
    nearest = assignments.sort_values(["cluster", "distance", "row"], kind="stable").groupby("cluster").head(members)
    rank = nearest.groupby("cluster").cumcount().to_numpy()
    table[nearest.cluster.to_numpy(), rank] = nearest.row.to_numpy()
    return table


def top_channels(levels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(channels [n, count] uint16, their levels [n, count]) of each image's most active channels (φ as a
    fraction of the channel's largest, quantised), most active first: a click needs no more of φ."""
    count = min(count, levels.shape[1])
    top = np.argsort(-levels.astype(np.int16), axis=1, kind="stable")[:, :count]
    return top.astype(np.uint16), np.take_along_axis(levels, top, axis=1)


def channel_top_images(phi: np.ndarray, count: int) -> np.ndarray:
    """[C, count] rows of the images with each channel's largest φ, largest first."""
    count = min(count, len(phi))
    top = np.argpartition(-phi, count - 1, axis=0)[:count].T
    order = np.argsort(-np.take_along_axis(phi.T, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int32)


def thumbnail_size(height: int, width: int, longest: int) -> tuple[int, int]:
    """(height, width) of a thumbnail: the image's own, or scaled so its longer side is `longest`."""
    scale = min(1.0, longest / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def sprite_sheets(images, count: int, longest: int, quality: int) -> dict:
    """Thumbnails of `count` uint8 images [H, W, C] (an iterable of batches [b, H, W, C]) in sprite sheets of
    SHEET_COLUMNS × SHEET_COLUMNS, WebP (lossless at quality 100), each in base64; thumbnail i is at column
    i % SHEET_COLUMNS, row (i // SHEET_COLUMNS) % SHEET_COLUMNS of sheet i // SHEET_COLUMNS²."""
    per_sheet = SHEET_COLUMNS * SHEET_COLUMNS
    sheets, canvas, size, taken = [], None, None, 0

    def close():
        buffer = io.BytesIO()
        canvas.save(buffer, format="WEBP", quality=quality, lossless=quality == 100, method=4)
        sheets.append(base64.b64encode(buffer.getvalue()).decode())

    for batch in images:
        for image in batch:
            if size is None:
                size = thumbnail_size(image.shape[0], image.shape[1], longest)
            slot = taken % per_sheet
            if slot == 0:
                if canvas is not None:
                    close()
                rows = -(-min(per_sheet, count - taken) // SHEET_COLUMNS)
                canvas = Image.new("RGB", (SHEET_COLUMNS * size[1], rows * size[0]))
            picture = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).convert("RGB")
            if picture.size != (size[1], size[0]):
                picture = picture.resize((size[1], size[0]), Image.Resampling.LANCZOS)
            canvas.paste(picture, ((slot % SHEET_COLUMNS) * size[1], (slot // SHEET_COLUMNS) * size[0]))
            taken += 1
    if canvas is not None:
        close()
    if taken != count:
        raise ValueError(f"thumbnails: {taken} images read, {count} expected")
    return {"height": size[0], "width": size[1], "columns": SHEET_COLUMNS, "per_sheet": per_sheet, "sheets": sheets}


def bundle(name: str, meta: pd.DataFrame, phi: np.ndarray, manifest: pd.DataFrame, maps: pd.DataFrame,
           neighbours: dict[str, tuple[np.ndarray, np.ndarray]], assignments: dict[int, pd.DataFrame],
           channels: pd.DataFrame, thumbnails: dict, samples: pd.DataFrame, *, sigma: float, active_fraction: float,
           members: int, channel_images: int) -> dict:
    """What the page shows of one run, for the images on its map (meta: key, split, label, in the map's
    order; phi [n, C] at σ): their positions (maps: embedding's columns), colourings, nearest neighbours in
    each space (feature set → neighbour_graph's rows and distances), k-means clusters (k → assignments of
    these images, in this order), φ quantised per channel with the channel table (stats/channels), the
    thumbnails (sprite_sheets) and the self-guided samples of the targets on the map (samples: key, png,
    phi_error)."""
    rows = pd.Series(np.arange(len(meta)), index=meta.key.to_numpy())
    files = manifest.set_index("key").reindex(meta.key)
    factors = pd.DataFrame([json.loads(f) for f in files.factors.dropna()], index=files.factors.dropna().index)
    channels = channels.sort_values("channel")
    selective = channels.selective.to_numpy()
    colourings = [categorical("label", files.label_name.fillna(meta.label.astype(str).set_axis(files.index)))]
    colourings += [categorical(f"cluster k={k}", table.cluster) for k, table in assignments.items()]
    colourings += factor_colourings(factors.reindex(meta.key)) if len(factors) else []
    colourings.append(numeric("active selective channels", active_channels(phi, active_fraction, selective).sum(1)))
    levels, peak = quantised(phi)
    top, top_levels = top_channels(levels, TOP_CHANNELS)
    on_map = samples[samples.key.isin(rows.index)]
    return {
        "name": name, "sigma": sigma, "count": len(meta), "keys": meta.key.tolist(),
        "files": files.origin.fillna("").tolist(), "test": packed((meta.split == "test").to_numpy(np.uint8)),
        "maps": {"t-SNE": {"x": packed(maps.tsne_x.to_numpy()), "y": packed(maps.tsne_y.to_numpy())},
                 "PCA": {"x": packed(maps.pca_x.to_numpy()), "y": packed(maps.pca_y.to_numpy())}},
        "colourings": colourings,
        "neighbours": [{"space": space, "title": feature_set_name(space), "rows": packed(found.astype(np.int32)),
                        "distances": packed(distances.astype(np.float32))}
                       for space, (found, distances) in neighbours.items()],
        "clusters": [{"k": k, "members": packed(cluster_members(table.assign(row=np.arange(len(table))), members))}
                     for k, table in assignments.items()],
        "channels": {"levels": packed(levels), "peak": peak.tolist(), "top": packed(top),
                     "top_levels": packed(top_levels), "selective": selective.tolist(),
                     "pr": channels.pr.fillna(0).tolist(),
                     "dead": channels.dead.tolist(),
                     "top_images": packed(channel_top_images(phi, channel_images))},
        "samples": [{"row": int(rows[key]), "key": key, "phi_error": group.phi_error.round(4).tolist(),
                     "images": [base64.b64encode(png).decode() for png in group.png]}
                    for key, group in on_map.groupby("key", sort=False)],
        "thumbnails": thumbnails,
    }
