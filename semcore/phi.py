"""φ(x_σ) = E_z[ā(x + σz)]: noise-averaged channel means of the UNet's blocks, per image and σ.

Images × noise draws go through the network as one batch; only the middle block's means need the
encoder alone, so φ skips the decoder. Noise comes from one generator per shard seeded from the
config: the same config gives the same numbers.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pa_dataset
import torch

from semcore.model import UNetFlex
from semcore.runtime import as_model_input
from semcore.tables import ParquetSink, vectors


# Rows per Parquet row group: large enough for fast scans, small enough that a shard's φ is never held
# whole (measured: peak RSS ~0.85 GB for 4,000 or 16,000 images per shard).
ROWS_PER_GROUP = 8192


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
    return {name: a.view(len(images), draws, -1).mean(dim=1) for name, a in means.items()}


def seeded_generator(seed: int, name: str, device: torch.device) -> torch.Generator:
    """A generator for one shard: independent of the others, identical on every rerun."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest, "big") >> 1)


@torch.no_grad()
def phi_batches(model: UNetFlex, batches: Iterator[tuple[list[dict], torch.Tensor]], sigmas: list[float],
                n_noise: int, generator: torch.Generator, device: torch.device,
                all_blocks: bool = False) -> Iterator[dict]:
    """For each (metadata, uint8 images) batch and each σ: {meta, sigma, means: {block: [B, C]}}."""
    model.eval()
    for metas, images in batches:
        x = as_model_input(images, device)
        for sigma in sigmas:
            means = noise_averaged_means(model, x, sigma, n_noise, generator, all_blocks)
            yield dict(metas=metas, sigma=sigma, means={k: v.float().cpu() for k, v in means.items()})


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


def write_phi(model: UNetFlex, batches, path, *, sigmas: list[float], n_noise: int, generator: torch.Generator,
              device: torch.device, metadata: dict) -> None:
    """φ of the middle block for every image of `batches` and every σ, to one Parquet file."""
    schema = phi_schema(model.config.channels[-1], metadata | {"block": "M", "n_noise": n_noise})
    with ParquetSink(path, schema, rows_per_group=ROWS_PER_GROUP) as sink:
        for record in phi_batches(model, batches, sigmas, n_noise, generator, device):
            sink.write(pa.table(_columns(record["metas"], record["sigma"]) | {"phi": vectors(record["means"]["M"].numpy())}))


def write_block_means(model: UNetFlex, batches, path, *, sigmas: list[float], n_noise: int,
                      generator: torch.Generator, device: torch.device, metadata: dict) -> None:
    """Noise-averaged means of every block (one row per image, σ and block), to one Parquet file."""
    schema = block_means_schema(metadata | {"n_noise": n_noise})
    with ParquetSink(path, schema, rows_per_group=ROWS_PER_GROUP) as sink:
        for record in phi_batches(model, batches, sigmas, n_noise, generator, device, all_blocks=True):
            for block, means in record["means"].items():
                columns = _columns(record["metas"], record["sigma"])
                sink.write(pa.table(columns | {"block": [block] * len(means), "means": means.numpy().tolist()}))


def read_phi(paths: list[str], sigma: float) -> tuple[pd.DataFrame, np.ndarray]:
    """The φ files at one σ: (key, split, label table, φ [N, C] float32), in file order."""
    dataset = pa_dataset.dataset(sorted(paths), format="parquet")
    table = dataset.to_table(filter=pc.field("sigma") == pa.scalar(sigma, pa.float64()))
    if table.num_rows == 0:
        raise ValueError(f"no φ at σ={sigma} in {len(paths)} files (is it in phi.sigmas?)")
    channels = table.schema.field("phi").type.list_size
    phi = table.column("phi").combine_chunks().flatten().to_numpy().reshape(-1, channels)
    return table.select(["key", "split", "label"]).to_pandas(), phi


def read_block_means(path: str) -> pd.DataFrame:
    """The block-means file as a table: key, split, label, sigma, block, means (one array per row)."""
    table = pd.read_parquet(path)
    table["means"] = table["means"].map(lambda m: np.asarray(m, dtype=np.float32))
    return table
