"""φ(x_σ) = E_z[ā(x + σz)]: noise-averaged channel means of the UNet's blocks, per image and σ.

Images × noise draws go through the network as one batch; only the middle block's means need the
encoder alone, so φ skips the decoder. Noise comes from one generator per shard seeded from the
config: the same config gives the same numbers, however shards are grouped into jobs. A φ file holds
its rows sorted by σ, in row groups of one σ each, so reading one σ reads only that σ's bytes.
A NaN or inf in the means stops the run with NotFiniteError, naming the images, σ and the model: no
file is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pa_dataset
import pyarrow.parquet as pq
import torch

from semcore import shards
from semcore.model import UNetFlex
from semcore.plan.sizes import ROWS_PER_GROUP  # large enough for fast scans, small enough to stream
from semcore.progress import progress
from semcore.runtime import Precision, as_model_input
from semcore.tables import ParquetSink, vectors


def noise_averaged_means(model: UNetFlex, images: torch.Tensor, sigma: float, n_noise: int,
                         generator: torch.Generator, all_blocks: bool = False) -> dict[str, torch.Tensor]:
    """{block: [B, C]} means over n_noise draws of ā(x + σz); only "M" unless all_blocks."""
    draws = n_noise if sigma > 0 else 1  # σ = 0: every draw is the clean image
    noisy = images.repeat_interleave(draws, dim=0)
    if sigma > 0:
        noisy = noisy + sigma * torch.randn(noisy.shape, generator=generator, device=noisy.device)
    if all_blocks:
        _, means = model(noisy, return_means=True)
    else:
        means = {"M": model.middle_means(noisy)}
    # fp32 before averaging the draws: under bf16 autocast the means come out in bf16
    return {name: a.float().view(len(images), draws, -1).mean(dim=1) for name, a in means.items()}


class NotFiniteError(FloatingPointError):
    """The network's channel means hold NaN or inf."""


def check_finite(means: dict[str, torch.Tensor], metas: list[dict], sigma: float, n_noise: int,
                 model_label: str) -> None:
    """Raise NotFiniteError if any image's means {block: [B, C]} hold NaN/inf. One reduction per block on
    the device, read back once; the images are looked up only on failure."""
    finite = torch.stack([torch.isfinite(m).all(dim=1) for m in means.values()]).all(dim=0)
    if finite.all():
        return
    bad = [metas[i]["key"] for i in torch.nonzero(~finite).flatten().tolist()]
    blocks = [name for name, m in means.items() if not torch.isfinite(m).all()]
    draws = f"the mean of {n_noise} noise draws" if sigma > 0 else "the clean image"
    raise NotFiniteError(
        f"φ is not finite for {len(bad)} of {len(metas)} images at σ {sigma:g} (first: {bad[0]}): the network "
        f"produced NaN/inf (block {', '.join(blocks)}, {draws}; {model_label})")


def describe_model(metadata: dict) -> str:
    """The model as an output's metadata names it, for error messages: its file (when the caller gives
    `model`) and its checkpoint's hash."""
    return ", ".join(f"{k} {metadata[k]}" for k in ("model", "checkpoint_sha256") if k in metadata) or "model unnamed"


def seeded_generator(seed: int, name: str, device: torch.device) -> torch.Generator:
    """A generator for one shard: independent of the others, identical on every rerun."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest, "big") >> 1)


@torch.no_grad()
def phi_batches(model: UNetFlex, batches: Iterator[tuple[list[dict], torch.Tensor]], sigmas: list[float],
                n_noise: int, generator: torch.Generator, device: torch.device, all_blocks: bool = False,
                precision: Precision = Precision(), model_label: str = "model unnamed") -> Iterator[dict]:
    """For each (metadata, uint8 images) batch and each σ: {meta, sigma, means: {block: [B, C]}}; NaN/inf
    raise NotFiniteError (see check_finite), naming the model by `model_label`."""
    model.eval()
    for metas, images in batches:
        x = as_model_input(images, device)
        for sigma in sigmas:
            with precision.autocast_context(device):
                means = noise_averaged_means(model, x, sigma, n_noise, generator, all_blocks)
            check_finite(means, metas, sigma, n_noise, model_label)
            yield dict(metas=metas, sigma=sigma, means={k: v.float().cpu() for k, v in means.items()})


def phi_of_images(model: UNetFlex, images: list[dict], sigmas: list[float], n_noise: int, seed: int,
                  device: torch.device, model_label: str = "model unnamed") -> dict[float, np.ndarray]:
    """{σ: φ [N, C]} of images given one by one ({key, pixels: uint8 H×W×C}, of any sizes), by phi_batches.

    The noise of each image and σ comes from a generator seeded by (seed, its pixels, σ): an image's φ does
    not depend on the other images or σ asked for, and the same image gives the same φ wherever it lies."""
    rows = {sigma: [] for sigma in sigmas}
    for image in images:
        pixels = torch.tensor(image["pixels"]).permute(2, 0, 1)[None]  # copied: PIL's arrays are read-only
        digest = hashlib.sha256(image["pixels"].tobytes()).hexdigest()
        for sigma in sigmas:
            generator = seeded_generator(seed, f"{digest}:{sigma}", device)
            for record in phi_batches(model, [([image], pixels)], [sigma], n_noise, generator, device,
                                      model_label=model_label):
                rows[sigma].append(record["means"]["M"][0].numpy())
    return {sigma: np.stack(vectors) for sigma, vectors in rows.items()}


def _counted(batches: Iterator[tuple[list[dict], torch.Tensor]], bar) -> Iterator[tuple[list[dict], torch.Tensor]]:
    """The batches, each counted on the progress bar once it is done with (all its σ computed)."""
    for metas, images in batches:
        yield metas, images
        bar.update(len(metas))


def _columns(metas: list[dict], sigma: float) -> dict:
    return dict(key=[m["key"] for m in metas], split=[m["split"] for m in metas],
                label=pa.array([m["label"] for m in metas], pa.int32()), sigma=pa.array([sigma] * len(metas), pa.float64()))


_ROW_FIELDS = [("key", pa.string()), ("split", pa.string()), ("label", pa.int32()), ("sigma", pa.float64())]


def _schema(fields: list, metadata: dict) -> pa.Schema:
    return pa.schema(_ROW_FIELDS + fields, metadata={k: str(v) for k, v in metadata.items()})


def phi_schema(channels: int, metadata: dict) -> pa.Schema:
    return _schema([("phi", pa.list_(pa.float32(), channels))], metadata)


def block_means_schema(metadata: dict) -> pa.Schema:
    return _schema([("block", pa.string()), ("means", pa.list_(pa.float32()))], metadata)


def write_phi(model: UNetFlex, shard_paths: list[str], path, *, sigmas: list[float], n_noise: int, seed: int,
              batch_images: int, device: torch.device, metadata: dict, precision: Precision = Precision()) -> None:
    """φ of the middle block for every image of the shards and every σ, to one Parquet file: rows sorted by
    σ, then in shard order, each row group of one σ.

    Each image is decoded and sent to the device once, for all σ; each σ's rows go to a temporary Arrow
    file beside the output, and are then copied σ by σ. Memory holds a batch, and at the end one σ's rows
    of these shards, mapped from disk (read back zero-copy)."""
    schema = phi_schema(model.config.channels[-1],
                        metadata | {"block": "M", "n_noise": n_noise} | precision.describe(device))
    order = sorted(set(sigmas))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(path).parent, prefix=f".{Path(path).name}.") as spill_dir:
        spills = {sigma: f"{spill_dir}/{i}.arrow" for i, sigma in enumerate(order)}
        with contextlib.ExitStack() as stack:
            writers = {sigma: stack.enter_context(pa.ipc.new_stream(spill, schema)) for sigma, spill in spills.items()}
            bar = stack.enter_context(progress(total=shards.count_images(shard_paths), desc="φ", unit="img"))
            for shard in shard_paths:
                # one generator per shard: an image's φ does not depend on which shards share its job
                generator = seeded_generator(seed, Path(shard).stem, device)
                batches = _counted(shards.read_batches([shard], batch_images), bar)
                for record in phi_batches(model, batches, order, n_noise, generator, device, precision=precision,
                                          model_label=describe_model(metadata)):
                    columns = _columns(record["metas"], record["sigma"]) | {"phi": vectors(record["means"]["M"].numpy())}
                    writers[record["sigma"]].write_table(pa.table(columns, schema=schema))
        with ParquetSink(path, schema, rows_per_group=ROWS_PER_GROUP) as sink:
            for spill in spills.values():
                with pa.memory_map(spill) as source:
                    sink.write_apart(pa.ipc.open_stream(source).read_all())  # no row group mixes two σ


def write_phi_table(table: pd.DataFrame, path) -> Path:
    """A φ table in memory (key, split, label, sigma, phi; table.attrs["metadata"]) to Parquet as write_phi
    writes φ: its schema, one row group per σ, the metadata in the schema; written atomically."""
    schema = phi_schema(len(table.phi.iloc[0]), table.attrs.get("metadata", {}))
    with ParquetSink(path, schema, rows_per_group=ROWS_PER_GROUP) as sink:
        for _, rows in table.groupby("sigma", sort=True):
            columns = {name: rows[name].to_numpy() for name in ("key", "split", "label", "sigma")}
            sink.write_apart(pa.table(columns | {"phi": vectors(np.stack(rows.phi))}, schema=schema))
    return Path(path)


def write_block_means(model: UNetFlex, batches, path, *, sigmas: list[float], n_noise: int,
                      generator: torch.Generator, device: torch.device, metadata: dict,
                      precision: Precision = Precision()) -> None:
    """Noise-averaged means of every block (one row per image, σ and block), to one Parquet file."""
    schema = block_means_schema(metadata | {"n_noise": n_noise} | precision.describe(device))
    with (ParquetSink(path, schema, rows_per_group=ROWS_PER_GROUP) as sink,
          progress(desc="block means", unit="img") as bar):
        for record in phi_batches(model, _counted(batches, bar), sigmas, n_noise, generator, device, all_blocks=True,
                                  precision=precision, model_label=describe_model(metadata)):
            for block, means in record["means"].items():
                columns = _columns(record["metas"], record["sigma"])
                sink.write(pa.table(columns | {"block": [block] * len(means), "means": means.numpy().tolist()}))


def read_phi(paths: list[str], sigma: float) -> tuple[pd.DataFrame, np.ndarray]:
    """The φ files at one σ: (key, split, label table, φ [N, C] float32), in file order. The filter
    skips the row groups of other σ by their statistics: only this σ's bytes are read."""
    dataset = pa_dataset.dataset(sorted(paths), format="parquet")
    table = dataset.to_table(filter=pc.field("sigma") == pa.scalar(sigma, pa.float64()))
    if table.num_rows == 0:
        raise ValueError(f"no φ at σ={sigma} in {len(paths)} files (is it in phi.sigmas?)")
    channels = table.schema.field("phi").type.list_size
    phi = table.column("phi").combine_chunks().flatten().to_numpy().reshape(-1, channels)
    return table.select(["key", "split", "label"]).to_pandas(), phi


def phi_chunks(paths: list[str], sigma: float) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """read_phi of each φ file in turn (sorted): (key, split, label table, φ [n, C]) a file at a time, the
    chunks cluster.nearest_in_chunks searches."""
    for path in sorted(map(str, paths)):
        yield read_phi([path], sigma)


def stored_phi(paths: list[str], sigma: float, key: str) -> np.ndarray | None:
    """φ [C] of the row `key` at σ in the φ files, or None when none holds it."""
    at = (pc.field("sigma") == pa.scalar(sigma, pa.float64())) & (pc.field("key") == key)
    table = pa_dataset.dataset(sorted(map(str, paths)), format="parquet").to_table(columns=["phi"], filter=at)
    if not table.num_rows:
        return None
    return table.column("phi").combine_chunks().flatten().to_numpy()[:table.schema.field("phi").type.list_size]


def stored_sigmas(path) -> set[float]:
    """The σ a φ file holds."""
    return set(pq.read_table(path, columns=["sigma"]).column("sigma").unique().to_pylist())


def stored_metadata(path) -> dict[str, str]:
    """The metadata a φ file records in its schema (model, checkpoint_sha256, n_noise, seed, size, …)."""
    return {key.decode(): value.decode() for key, value in (pq.read_schema(path).metadata or {}).items()}


def read_block_means(path: str) -> pd.DataFrame:
    """The block-means file as a table: key, split, label, sigma, block, means (one array per row)."""
    table = pd.read_parquet(path)
    table["means"] = table["means"].map(lambda m: np.asarray(m, dtype=np.float32))
    return table
