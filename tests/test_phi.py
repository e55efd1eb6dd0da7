import copy
import json

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch

from semcore import phi, shards
from semcore.model import UNetConfig, UNetFlex
from semcore.runtime import Precision
from semcore.sources import synthetic

SIGMAS = [0.0, 0.2, 0.5]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return UNetFlex(UNetConfig(channels=[4, 8, 16])).eval()


@pytest.fixture(scope="module")
def shard_paths(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    shards.write_shards(synthetic(40, 0, 16), out, source="synthetic", size=16, channels=3, min_size=16,
                        test_fraction=0.5, seed=0, samples_per_shard=15)
    return sorted(map(str, out.glob("*.tar")))


def test_noise_averaged_means_average_the_draws(model):
    images = torch.rand(3, 3, 16, 16)
    generator = torch.Generator().manual_seed(0)
    clean = phi.noise_averaged_means(model, images, 0.0, 5, generator)["M"]
    assert torch.allclose(clean, model.middle_means(images))
    noisy = phi.noise_averaged_means(model, images, 0.3, 5, torch.Generator().manual_seed(1))["M"]
    z = torch.randn(15, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    expected = model.middle_means(images.repeat_interleave(5, 0) + 0.3 * z).view(3, 5, -1).mean(1)
    assert torch.allclose(noisy, expected, atol=1e-6)
    every = phi.noise_averaged_means(model, images, 0.3, 5, torch.Generator().manual_seed(1), all_blocks=True)
    assert list(every) == model.config.block_names and torch.allclose(every["M"], noisy, atol=1e-6)


def _write_one(model, paths, out, precision=Precision()):
    phi.write_phi(model, paths, out, sigmas=SIGMAS, n_noise=4, seed=0, batch_images=7, device=torch.device("cpu"),
                  metadata={"checkpoint_sha256": "abc", "seed": 0}, precision=precision)


def _write(model, paths, out):
    """One file per split, as φ's jobs group shards."""
    for split in ("train", "test"):
        _write_one(model, [p for p in paths if f"/{split}-" in p], out / f"{split}.parquet")


def test_phi_files_have_the_schema_and_read_as_one_table(model, shard_paths, tmp_path):
    _write(model, shard_paths, tmp_path)
    schema = pq.read_schema(next(tmp_path.glob("*.parquet")))
    assert str(schema.field("phi").type) == "fixed_size_list<element: float>[16]"
    recorded = {k: schema.metadata[k.encode()].decode()
                for k in ("block", "n_noise", "checkpoint_sha256", "device", "autocast", "tf32")}
    assert recorded == {"block": "M", "n_noise": "4", "checkpoint_sha256": "abc", "device": "cpu", "autocast": "none",
                        "tf32": "False"}
    files = sorted(map(str, tmp_path.glob("*.parquet")))
    meta, values = phi.read_phi(files, 0.2)
    assert len(meta) == 40 and values.shape == (40, 16) and meta.key.is_unique
    count, sigmas = duckdb.sql(f"SELECT count(*), count(DISTINCT sigma) FROM '{tmp_path}/*.parquet'").fetchall()[0]
    assert (count, sigmas) == (40 * len(SIGMAS), len(SIGMAS))


def test_rows_are_sorted_by_sigma_and_a_sigma_filter_reads_only_its_row_groups(model, shard_paths, tmp_path, monkeypatch):
    monkeypatch.setattr(phi, "ROWS_PER_GROUP", 8)  # several row groups per σ
    path = tmp_path / "train.parquet"
    _write_one(model, [p for p in shard_paths if "/train-" in p], path)
    table = pq.read_table(path)
    assert table.column("sigma").to_pylist() == sorted(table.column("sigma").to_pylist())
    keys = table.column("key").to_pylist()
    assert keys[: len(keys) // len(SIGMAS)] * len(SIGMAS) == keys  # the same shard order at every σ
    metadata = pq.ParquetFile(path).metadata
    sigma = metadata.schema.names.index("sigma")
    groups = [metadata.row_group(i).column(sigma).statistics for i in range(metadata.num_row_groups)]
    assert all(g.min == g.max for g in groups) and metadata.num_row_groups > len(SIGMAS)
    fragment = next(ds.dataset(path).get_fragments())
    selected = fragment.split_by_row_group(ds.field("sigma") == pa.scalar(0.2, pa.float64()))
    assert sum(f.row_groups[0].num_rows for f in selected) == len(keys) // len(SIGMAS)
    assert len(list(selected)) == sum(g.min == 0.2 for g in groups)


def test_phi_does_not_depend_on_how_shards_are_grouped(model, shard_paths, tmp_path):
    _write(model, shard_paths, tmp_path / "by_split")
    for path in shard_paths:
        _write_one(model, [path], tmp_path / "by_shard" / path.split("/")[-1].replace(".tar", ".parquet"))
    for sigma in SIGMAS:
        grouped = phi.read_phi(sorted(map(str, (tmp_path / "by_split").glob("*.parquet"))), sigma)
        single = phi.read_phi(sorted(map(str, (tmp_path / "by_shard").glob("*.parquet"))), sigma)
        assert grouped[0].key.tolist() == single[0].key.tolist() and np.array_equal(grouped[1], single[1])


def test_bf16_autocast_is_applied_and_recorded(model, shard_paths, tmp_path):
    _write_one(model, shard_paths[:1], tmp_path / "fp32.parquet")
    _write_one(model, shard_paths[:1], tmp_path / "bf16.parquet", Precision(autocast="bf16"))
    assert pq.read_schema(tmp_path / "bf16.parquet").metadata[b"autocast"] == b"bf16"
    fp32, bf16 = (phi.read_phi([str(tmp_path / f"{name}.parquet")], 0.2)[1] for name in ("fp32", "bf16"))
    assert bf16.dtype == np.float32 and not np.array_equal(fp32, bf16)
    assert np.allclose(fp32, bf16, rtol=0.05, atol=0.05 * np.abs(fp32).max())


def test_phi_is_bit_identical_across_runs(model, shard_paths, tmp_path):
    _write(model, shard_paths, tmp_path / "a")
    _write(model, shard_paths, tmp_path / "b")
    for sigma in SIGMAS:
        a = phi.read_phi(sorted(map(str, (tmp_path / "a").glob("*.parquet"))), sigma)[1]
        b = phi.read_phi(sorted(map(str, (tmp_path / "b").glob("*.parquet"))), sigma)[1]
        assert np.array_equal(a, b)


def test_block_means_cover_every_block_image_and_sigma(model, shard_paths, tmp_path):
    out = tmp_path / "blocks.parquet"
    phi.write_block_means(model, shards.read_batches(shard_paths, 8, limit=10), out, sigmas=SIGMAS, n_noise=3,
                          generator=phi.seeded_generator(0, "x", torch.device("cpu")), device=torch.device("cpu"),
                          metadata={})
    table = phi.read_block_means(str(out))
    assert len(table) == 10 * len(SIGMAS) * len(model.config.block_names)
    widths = table.groupby("block").means.first().map(len).to_dict()
    assert widths == {"E1": 4, "E2": 8, "M": 16, "D2": 8}


def test_a_failed_write_leaves_no_file(model, shard_paths, tmp_path):
    broken = tmp_path / "train-000009.tar"
    broken.write_bytes(b"not a tar archive" * 100)
    (tmp_path / "index.json").write_text(json.dumps({broken.name: {"samples": 1, "bytes": broken.stat().st_size}}))
    with pytest.raises(shards.CorruptShard, match="train-000009.tar: unreadable at its start"):  # after the first
        # shard's φ went to the temporary files
        _write_one(model, [shard_paths[0], str(broken)], tmp_path / "out" / "x.parquet")
    assert list((tmp_path / "out").iterdir()) == []


def test_non_finite_means_name_the_images_sigma_draws_and_model():
    means = {"M": torch.tensor([[1.0, 2.0], [float("nan"), 0.0], [0.0, 0.0], [float("inf"), 1.0]])}
    metas = [{"key": key} for key in ("a", "b", "c", "d")]
    phi.check_finite({"M": means["M"][[0, 2]]}, [metas[0], metas[2]], 0.5, 4, "model x")  # finite rows: no error
    message = r"φ is not finite for 2 of 4 images at σ 0.5 \(first: b\): the network produced NaN/inf " \
              r"\(block M, the mean of 4 noise draws; model x\)"
    with pytest.raises(phi.NotFiniteError, match=message):
        phi.check_finite(means, metas, 0.5, 4, "model x")


def test_a_network_producing_nan_stops_phi_and_writes_nothing(model, shard_paths, tmp_path):
    broken = copy.deepcopy(model)
    broken.middle[0].weight.data.fill_(float("nan"))  # the middle block and the decoder after it
    first = next(shards.read_batches(shard_paths[:1], 1))[0][0]["key"]
    expected = rf"φ is not finite for 7 of 7 images at σ 0 \(first: {first}\): the network produced NaN/inf " \
               r"\(block M, the clean image; checkpoint_sha256 abc\)"
    with pytest.raises(phi.NotFiniteError, match=expected):
        _write_one(broken, shard_paths[:1], tmp_path / "phi" / "x.parquet")
    with pytest.raises(phi.NotFiniteError, match=r"\(block M, D2, the clean image; model m.pt, checkpoint_sha256 abc"):
        phi.write_block_means(broken, shards.read_batches(shard_paths[:1], 8), tmp_path / "phi" / "blocks.parquet",
                              sigmas=SIGMAS, n_noise=3, generator=torch.Generator(), device=torch.device("cpu"),
                              metadata={"model": "m.pt", "checkpoint_sha256": "abc"})
    assert list((tmp_path / "phi").iterdir()) == []
