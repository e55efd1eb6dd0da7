"""WebDataset shards: writing them reproducibly with a manifest, and streaming them back as batches.

A sample is `<key>.png` (the conformed image) + `<key>.json` (label, label_name, source, origin, split,
factors). Shards are `{split}-{i:06d}.tar`, written under a temporary name and renamed when complete,
so a killed job never leaves a shard that looks whole. The manifest has one row per input item.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import random
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import torch
import webdataset as wds
from PIL import Image
from tqdm import tqdm

from semcore.sources import Item, UnusableImage, conform

log = logging.getLogger(__name__)
SPLITS = ("train", "test")
PREFETCH_BATCHES = 4  # per loader worker: a few batches in hand cover uneven decoding times


def split_of(key: str, seed: int, test_fraction: float) -> str:
    """A stable split from a hash of the key: adding or removing inputs never moves the others."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") / 2**64 < test_fraction else "train"


class _ShardSequence:
    """Writes {split}-000000.tar, {split}-000001.tar, … with at most `per_shard` samples each."""

    def __init__(self, out_dir: Path, split: str, per_shard: int):
        self.out_dir, self.split, self.per_shard = out_dir, split, per_shard
        self.index, self.count, self.writer, self.file = -1, 0, None, None

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}.tar"

    def write(self, sample: dict) -> str:
        if self.writer is None or self.count == self.per_shard:
            self.close()
            self.index, self.count = self.index + 1, 0
            self.file = open(self.out_dir / (self.name + ".tmp"), "wb")
            self.writer = wds.TarWriter(self.file, mtime=0)  # fixed mtime: byte-identical tars
        self.writer.write(sample)
        self.count += 1
        return self.name

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.file.close()
            os.replace(self.out_dir / (self.name + ".tmp"), self.out_dir / self.name)
            self.writer = None


def png_bytes(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_shards(items: Iterable[Item], out_dir: str | Path, *, source: str, size: int, channels: int,
                 min_size: int, test_fraction: float, seed: int, samples_per_shard: int) -> pd.DataFrame:
    """Conform and write every readable item; returns the manifest (one row per item, written or skipped)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sequences = {split: _ShardSequence(out_dir, split, samples_per_shard) for split in SPLITS}
    rows = []
    for item in tqdm(items, desc="shard", unit="img", mininterval=10):
        split = split_of(item.key, seed, test_fraction)
        row = dict(key=item.key, origin=item.origin, label=item.label, label_name=item.label_name,
                   source=source, split=split, shard=None, status="skipped", reason=item.error,
                   factors=json.dumps(item.factors, sort_keys=True) if item.factors else None)
        if item.error is None:
            try:
                pixels = conform(item.image, size, channels, min_size)
            except UnusableImage as error:
                row["reason"] = str(error)
            else:
                meta = dict(label=item.label, label_name=item.label_name, source=source, origin=item.origin,
                            split=split, factors=item.factors)
                sample = {"__key__": item.key, "png": png_bytes(pixels),
                          "json": json.dumps(meta, sort_keys=True).encode()}
                row.update(shard=sequences[split].write(sample), status="written")
        if row["status"] == "skipped":
            log.warning("skipped %s (%s): %s", item.key, item.origin, row["reason"])
        rows.append(row)
    for sequence in sequences.values():
        sequence.close()
    manifest = pd.DataFrame(rows, columns=["key", "origin", "label", "label_name", "source", "split", "shard",
                                           "status", "reason", "factors"])
    if manifest.empty:
        raise ValueError(f"data.source {source!r} yielded no inputs")
    log.info("%d inputs: %d written, %d skipped", len(manifest), (manifest.status == "written").sum(),
             (manifest.status == "skipped").sum())
    return manifest


def write_parquet(table: pd.DataFrame, path: str | Path) -> None:
    """Write under a temporary name and rename: a reader never sees half a file."""
    tmp = f"{path}.tmp"
    table.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def shard_paths(shard_dir: str | Path, split: str) -> list[str]:
    paths = sorted(str(p) for p in Path(shard_dir).glob(f"{split}-*.tar"))
    if not paths:
        raise FileNotFoundError(f"no {split} shards in {shard_dir} (is data.test_fraction > 0?)")
    return paths


def decode_batch(samples: list[dict]) -> torch.Tensor:
    """The PNGs of a batch of samples → uint8 [B, C, H, W] (a channels-last view), in one pass."""
    pixels = np.stack([np.asarray(Image.open(io.BytesIO(sample["png"]))) for sample in samples])
    if pixels.ndim == 3:  # grayscale
        pixels = pixels[..., None]
    return torch.from_numpy(pixels).permute(0, 3, 1, 2)


class BatchStream(torch.utils.data.IterableDataset):
    """An endless stream of shuffled uint8 batches [B, C, H, W], decoded where it is iterated: in each
    DataLoader worker, so the training process only receives whole batches.

    Epoch e deals a seeded order of all the shards to the workers like cards (worker w of W takes every
    W-th): the workers' epoch-e hands are disjoint and together hold every image once. A worker starts its
    next epoch when it has read its hand (workers whose hands hold as many images stay in step; over many
    epochs each draws every shard equally often). Each shuffles through its own buffer of `shuffle_buffer`
    samples. The same (seed, number of workers) gives the same stream: the DataLoader takes batches from
    the workers in turn."""

    def __init__(self, paths: list[str], batch_size: int, seed: int, shuffle_buffer: int):
        super().__init__()
        self.paths, self.batch_size, self.seed, self.shuffle_buffer = paths, batch_size, seed, shuffle_buffer

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if workers > len(self.paths):
            raise ValueError(f"train.loader_workers: {workers} for {len(self.paths)} shards: a worker would have none")
        samples = wds.tarfile_to_samples()(self._hand(worker, workers))
        shuffled = wds.shuffle(self.shuffle_buffer, seed=f"{self.seed}:worker{worker}")(samples)
        return wds.batched(self.batch_size, collation_fn=decode_batch, partial=False)(shuffled)

    def _hand(self, worker: int, workers: int) -> Iterator[dict]:
        for epoch in itertools.count():
            order = random.Random(f"{self.seed}:epoch{epoch}").sample(self.paths, len(self.paths))
            for path in order[worker::workers]:
                yield dict(url=path)


def batches(shard_dir: str | Path, split: str, batch_size: int, seed: int, shuffle_buffer: int = 2000,
            workers: int = 0, pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """An endless stream of shuffled uint8 batches [B, C, H, W] (see BatchStream), decoded by `workers`
    processes (0: by this one), at most one per shard; pin_memory for fast, asynchronous copies to a GPU.

    The same seed and workers give the same stream: every image once per epoch, give or take the shuffle
    buffer at an epoch's edges. Every process reads all shards (no node splitting): DDP training gives each
    rank its own seed."""
    paths = shard_paths(shard_dir, split)
    if workers > len(paths):
        log.warning("train.loader_workers: %d, but there are %d %s shards: using %d", workers, len(paths), split,
                    len(paths))
        workers = len(paths)
    loader = torch.utils.data.DataLoader(BatchStream(paths, batch_size, seed, shuffle_buffer), batch_size=None,
                                         num_workers=workers, pin_memory=pin_memory,
                                         prefetch_factor=PREFETCH_BATCHES if workers else None)
    return iter(loader)


def _with_metadata(samples: list[dict]) -> tuple[list[dict], torch.Tensor]:
    return [{"key": s["__key__"], **json.loads(s["json"])} for s in samples], decode_batch(samples)


def read_batches(paths: list[str], batch_size: int, limit: int | None = None) -> Iterator[tuple[list[dict], torch.Tensor]]:
    """The samples of the shards in order, once (the first `limit` only, if given): (metadata dicts
    with "key", uint8 images)."""
    taken = 0
    shard_samples = wds.WebDataset(paths, shardshuffle=False, nodesplitter=None)  # all of them, also under DDP
    for metas, images in shard_samples.batched(batch_size, collation_fn=_with_metadata):
        if limit is not None:
            if taken >= limit:
                return
            metas, images = metas[:limit - taken], images[:limit - taken]
        taken += len(metas)
        yield metas, images


def first_images(shard_dir: str | Path, split: str, n: int) -> torch.Tensor:
    """The first n images of a split in shard order (all, if fewer): a fixed evaluation set, uint8."""
    return next(read_batches(shard_paths(shard_dir, split), n, limit=n))[1]


def images_by_key(shard_dir: str | Path, manifest: pd.DataFrame, keys: list[str]) -> dict[str, np.ndarray]:
    """The uint8 H×W×C images of the given keys, reading only the shards that hold them."""
    wanted = set(keys)
    paths = sorted(str(Path(shard_dir) / name) for name in manifest[manifest.key.isin(wanted)].shard.unique())
    found = {}
    for metas, images in read_batches(paths, 256):
        for meta, image in zip(metas, images):
            if meta["key"] in wanted:
                found[meta["key"]] = image.permute(1, 2, 0).numpy()
    return found


def factor_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """The ground-truth factors of written items, one column per factor, indexed by key (empty when the
    source records none)."""
    written = manifest[(manifest.status == "written") & manifest.factors.notna()]
    return pd.DataFrame([json.loads(f) for f in written.factors], index=written.key.to_numpy())
