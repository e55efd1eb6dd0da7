"""WebDataset shards: writing them reproducibly with a manifest, and streaming them back as batches or as
the images a job needs (by key; the samplers' targets and start image are semcore.sample's).

A sample is `<key>.png` (the conformed image) + `<key>.json` (label, label_name, source, origin, split,
factors). Shards are `{split}-{i:06d}.tar`, written under a temporary name and renamed when complete,
so a killed job never leaves a shard that looks whole; `index.json` beside them records each shard's
samples and bytes, and reading checks both. The manifest has one row per input item.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import random
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import torch
import webdataset as wds

from semcore.files import atomic
from semcore.images import decode_png, png_bytes
from semcore.progress import progress
from semcore.sources import Item, UnusableImage, conform

log = logging.getLogger(__name__)
SPLITS = ("train", "test")
PREFETCH_BATCHES = 4  # per loader worker: a few batches in hand cover uneven decoding times
INDEX = "index.json"
RERUN = "rerun it with `snakemake --forcerun shard`"
MANIFEST_COLUMNS = ["key", "origin", "label", "label_name", "source", "split", "shard", "status", "reason", "factors",
                    "transforms", "duplicate_of"]


class CorruptShard(ValueError):
    """A shard that is not as `write_shards` wrote it: truncated, replaced, or holding foreign members."""


def split_of(key: str, seed: int, test_fraction: float) -> str:
    """A stable split from a hash of the key: adding or removing inputs never moves the others."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") / 2**64 < test_fraction else "train"


class _ShardSequence:
    """Writes {split}-000000.tar, {split}-000001.tar, … with at most `per_shard` samples each."""

    def __init__(self, out_dir: Path, split: str, per_shard: int):
        self.out_dir, self.split, self.per_shard = out_dir, split, per_shard
        self.index, self.count, self.writer, self.shard = -1, 0, None, None
        self.written = {}  # shard name → its samples and bytes, for the index

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}.tar"

    def write(self, sample: dict) -> str:
        if self.writer is None or self.count == self.per_shard:
            self.close()
            self.index, self.count = self.index + 1, 0
            self.shard = contextlib.ExitStack()  # the tar file, then its rename from a temporary name
            tmp = self.shard.enter_context(atomic(self.out_dir / self.name))
            self.writer = wds.TarWriter(self.shard.enter_context(open(tmp, "wb")), mtime=0)  # byte-identical tars
        self.writer.write(sample)
        self.count += 1
        return self.name

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.shard.close()
            self.written[self.name] = {"samples": self.count, "bytes": (self.out_dir / self.name).stat().st_size}
            self.writer = None


def write_shards(items: Iterable[Item], out_dir: str | Path, *, source: str, size: int, channels: int,
                 min_size: int, test_fraction: float, seed: int, samples_per_shard: int) -> pd.DataFrame:
    """Conform and write every readable item, and the shard index; returns the manifest (one row per item,
    written or skipped). Raises ValueError, saying why inputs were skipped, when a split would be empty."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sequences = {split: _ShardSequence(out_dir, split, samples_per_shard) for split in SPLITS}
    rows = []
    for item in progress(items, desc="shard", unit="img"):
        split = split_of(item.key, seed, test_fraction)
        row = dict(key=item.key, origin=item.origin, label=item.label, label_name=item.label_name,
                   source=source, split=split, shard=None, status="skipped", reason=item.error,
                   factors=json.dumps(item.factors, sort_keys=True) if item.factors else None,
                   transforms="; ".join(item.transforms) or None, duplicate_of=item.duplicate_of)
        if item.error is None:
            try:
                pixels, transforms = conform(item.image, size, channels, min_size)
            except UnusableImage as error:
                row["reason"] = str(error)
            else:
                meta = dict(label=item.label, label_name=item.label_name, source=source, origin=item.origin,
                            split=split, factors=item.factors)
                sample = {"__key__": item.key, "png": png_bytes(pixels),
                          "json": json.dumps(meta, sort_keys=True).encode()}
                row.update(shard=sequences[split].write(sample), status="written",
                           transforms="; ".join(item.transforms + transforms) or None)
        if row["status"] == "skipped":
            log.warning("skipped %s (%s): %s", item.key, item.origin, row["reason"])
        rows.append(row)
    for sequence in sequences.values():
        sequence.close()
    with atomic(out_dir / INDEX) as tmp:
        tmp.write_text(json.dumps({name: counts for sequence in sequences.values()
                                   for name, counts in sequence.written.items()}, indent=1, sort_keys=True))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    _check_splits(manifest, source, test_fraction)
    log.info("%d inputs: %d written, %d skipped", len(manifest), (manifest.status == "written").sum(),
             (manifest.status == "skipped").sum())
    return manifest


def _check_splits(manifest: pd.DataFrame, source: str, test_fraction: float) -> None:
    """Refuse a data set that cannot train or be evaluated, counting the reasons its inputs were skipped."""
    written = manifest.split[manifest.status == "written"].value_counts()
    if not written.sum():
        problem = f"none of the {len(manifest)} inputs could be used (see data.size / data.min_size and data.{source})"
    elif not written.get("train"):
        problem = f"all {written.sum()} usable images fell in the test split: add images or lower data.test_fraction"
    elif test_fraction > 0 and not written.get("test"):
        problem = (f"none of the {written.sum()} usable images fell in the test split: add images or raise "
                   f"data.test_fraction ({test_fraction})")
    else:
        return
    skipped = manifest[manifest.status == "skipped"]
    kinds = skipped.reason.str.split(": ", n=1).str[0].where(skipped.duplicate_of.isna(), "duplicate")
    counts = ", ".join(f"{n} {kind}" for kind, n in kinds.value_counts().items())
    raise ValueError(f"data.{source}: {problem}" + (f"; skipped: {counts}" if counts else ""))


def read_index(shard_dir: str | Path) -> dict[str, dict]:
    """Shard name → {"samples", "bytes"}, as `write_shards` recorded them."""
    path = Path(shard_dir) / INDEX
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing: the shards in {shard_dir} predate the shard index, or their "
                                f"writing did not finish; {RERUN}") from None
    except ValueError as error:
        raise CorruptShard(f"{path}: not a shard index ({error}); {RERUN}") from None


def shard_paths(shard_dir: str | Path, split: str) -> list[str]:
    """The shards of a split the index lists (stray files beside them are not), each checked to be there,
    whole."""
    index = read_index(shard_dir)
    paths = [Path(shard_dir) / name for name in sorted(index) if name.startswith(f"{split}-")]
    if not paths:
        raise FileNotFoundError(f"no {split} shards in {Path(shard_dir) / INDEX} (is data.test_fraction > 0?)")
    for path in paths:
        recorded = index[path.name]["bytes"]
        try:
            found = path.stat().st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: missing, the shard index lists it; {RERUN}") from None
        if found != recorded:
            raise CorruptShard(f"{path}: {found} bytes, the shard index says {recorded}: truncated or replaced; "
                               f"{RERUN}")
    return [str(path) for path in paths]


def _samples(paths: Iterable[str]) -> Iterator[dict]:
    """The samples of each shard in turn, checked: a shard that is not whole (a tar that ends early, or
    that garbage cuts short, which tarfile takes for its end) or a sample with members other than .png and
    .json raises CorruptShard naming the shard, never a silent loss or a decoded foreign member (.pyd,
    .pth: WebDataset's decoders would unpickle them)."""
    indexes = {}  # folder → its index, read once (training streams the same shards epoch after epoch)
    for path in map(Path, paths):
        if path.parent not in indexes:
            indexes[path.parent] = read_index(path.parent)
        index = indexes[path.parent]
        if path.name not in index:
            raise CorruptShard(f"{path}: not in the shard index {path.parent / INDEX}; {RERUN}")
        key, count = None, 0  # the last sample read whole, and how many were
        try:
            for sample in wds.tarfile_to_samples()([dict(url=str(path))]):
                extensions = sorted(name for name in sample if not name.startswith("__"))
                if extensions != ["json", "png"]:
                    members = [f"{sample['__key__']}.{extension}" for extension in extensions]
                    raise CorruptShard(f"{path}: sample {sample['__key__']!r} has the members {members}; a shard's "
                                       "samples hold a .png and a .json, and nothing else is read")
                key, count = sample["__key__"], count + 1
                yield sample
        except CorruptShard:
            raise
        except Exception as error:  # tarfile's and WebDataset's, on bytes that are not a whole tar
            what = error.args[0] if error.args else type(error).__name__
            raise CorruptShard(f"{path}: unreadable {_after(key)} ({what}); {RERUN}") from error
        expected = index[path.name]["samples"]
        if count != expected:
            raise CorruptShard(f"{path}: {count} samples, the shard index says {expected}: cut short {_after(key)}, "
                               f"or replaced; {RERUN}")


def _after(key: str | None) -> str:
    return f"after sample {key!r}" if key else "at its start"


@contextlib.contextmanager
def _member(sample: dict, extension: str) -> Iterator[None]:
    """Errors decoding a member of a sample name its shard and the member."""
    try:
        yield
    except Exception as error:
        raise CorruptShard(f"{sample['__url__']}: member {sample['__key__']}.{extension} is unreadable ({error}); "
                           f"{RERUN}") from error


def decode_batch(samples: list[dict]) -> torch.Tensor:
    """The PNGs of a batch of samples → uint8 [B, C, H, W] (a channels-last view), in one pass."""
    return torch.from_numpy(np.stack([_pixels(sample) for sample in samples])).permute(0, 3, 1, 2)


def _pixels(sample: dict) -> np.ndarray:
    with _member(sample, "png"):
        return decode_png(sample["png"])


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
        samples = _samples(self._hand(worker, workers))
        shuffled = wds.shuffle(self.shuffle_buffer, seed=f"{self.seed}:worker{worker}")(samples)
        return wds.batched(self.batch_size, collation_fn=decode_batch, partial=False)(shuffled)

    def _hand(self, worker: int, workers: int) -> Iterator[str]:
        for epoch in itertools.count():
            order = random.Random(f"{self.seed}:epoch{epoch}").sample(self.paths, len(self.paths))
            yield from order[worker::workers]


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
    return [_metadata(sample) for sample in samples], decode_batch(samples)


def _metadata(sample: dict) -> dict:
    with _member(sample, "json"):
        return {"key": sample["__key__"], **json.loads(sample["json"])}


def read_batches(paths: list[str], batch_size: int, limit: int | None = None) -> Iterator[tuple[list[dict], torch.Tensor]]:
    """The samples of the shards in order, once (the first `limit` only, if given): (metadata dicts
    with "key", uint8 images)."""
    taken = 0
    # all of them, in order, also under DDP and in a loader worker
    for metas, images in wds.batched(batch_size, collation_fn=_with_metadata)(_samples(paths)):
        if limit is not None:
            if taken >= limit:
                return
            metas, images = metas[:limit - taken], images[:limit - taken]
        taken += len(metas)
        yield metas, images


def first_images(shard_dir: str | Path, split: str, n: int) -> torch.Tensor:
    """The first n images of a split in shard order (all, if fewer): a fixed evaluation set, uint8."""
    return next(read_batches(shard_paths(shard_dir, split), n, limit=n))[1]


def count_images(paths: list[str]) -> int:
    """The images in these shards, as their folders' shard indexes record them."""
    indexes = {folder: read_index(folder) for folder in {Path(path).parent for path in paths}}
    return sum(indexes[Path(path).parent][Path(path).name]["samples"] for path in paths)


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
