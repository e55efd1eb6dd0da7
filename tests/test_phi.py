import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from semcore import phi, shards
from semcore.model import UNetConfig, UNetFlex
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


def _write(model, paths, out):
    for path in paths:
        name = path.split("/")[-1].removesuffix(".tar")
        phi.write_phi(model, shards.read_batches([path], 7), out / f"{name}.parquet", sigmas=SIGMAS, n_noise=4,
                      generator=phi.seeded_generator(0, name, torch.device("cpu")), device=torch.device("cpu"),
                      metadata={"checkpoint_sha256": "abc", "seed": 0})


def test_phi_files_have_the_schema_and_read_as_one_table(model, shard_paths, tmp_path):
    _write(model, shard_paths, tmp_path)
    schema = pq.read_schema(next(tmp_path.glob("*.parquet")))
    assert str(schema.field("phi").type) == "fixed_size_list<element: float>[16]"
    assert {k: schema.metadata[k.encode()].decode() for k in ("block", "n_noise", "checkpoint_sha256")} == \
        {"block": "M", "n_noise": "4", "checkpoint_sha256": "abc"}
    files = sorted(map(str, tmp_path.glob("*.parquet")))
    meta, values = phi.read_phi(files, 0.2)
    assert len(meta) == 40 and values.shape == (40, 16) and meta.key.is_unique
    count, sigmas = duckdb.sql(f"SELECT count(*), count(DISTINCT sigma) FROM '{tmp_path}/*.parquet'").fetchall()[0]
    assert (count, sigmas) == (40 * len(SIGMAS), len(SIGMAS))


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


def test_a_failed_write_leaves_no_file(model, tmp_path):
    def broken_batches():
        yield [{"key": "a", "split": "train", "label": 0}], torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
        raise OSError("disk gone")

    with pytest.raises(OSError):
        phi.write_phi(model, broken_batches(), tmp_path / "x.parquet", sigmas=[0.0], n_noise=1,
                      generator=torch.Generator(), device=torch.device("cpu"), metadata={})
    assert list(tmp_path.iterdir()) == []
