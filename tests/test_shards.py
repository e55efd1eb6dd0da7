import hashlib

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from semcore import shards
from semcore.sources import folder, synthetic

OPTIONS = dict(source="synthetic", size=16, channels=3, min_size=16, test_fraction=0.25, seed=0, samples_per_shard=30)


def test_every_input_is_written_once_and_shards_respect_their_size(tmp_path):
    manifest = shards.write_shards(synthetic(100, 0, 16), tmp_path, **OPTIONS)
    assert len(manifest) == 100 and (manifest.status == "written").all()
    counts = manifest.groupby("shard").size()
    assert counts.max() <= 30
    read = {}
    for path in sorted(tmp_path.glob("*.tar")):
        for sample in wds.WebDataset(str(path), shardshuffle=False).decode("rgb8"):
            meta = sample["json"]  # decoded by webdataset
            read[sample["__key__"]] = (path.name, meta["split"], meta["label"], sample["png"].shape)
    assert set(read) == set(manifest.key)
    for row in manifest.itertuples():
        assert read[row.key][:3] == (row.shard, row.split, row.label)
        assert read[row.key][3] == (16, 16, 3)
    assert set(manifest.split) == {"train", "test"}
    assert all(name.startswith(split) for name, split, *_ in read.values())


def test_shards_are_byte_identical_across_runs(tmp_path):
    digests = []
    for run in ("a", "b"):
        shards.write_shards(synthetic(50, 0, 16), tmp_path / run, **OPTIONS)
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / run).glob("*.tar")})
    assert digests[0] == digests[1]


def test_split_is_stable_per_key():
    assert shards.split_of("k1", 0, 0.5) == shards.split_of("k1", 0, 0.5)
    fraction = np.mean([shards.split_of(f"k{i}", 0, 0.2) == "test" for i in range(5000)])
    assert 0.18 < fraction < 0.22


def test_broken_files_are_skipped_with_reasons_and_counted(tmp_path):
    images = tmp_path / "images"
    (images / "good").mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (40, 40), (50 * i, 0, 0)).save(images / "good" / f"{i}.png")
    Image.new("RGB", (40, 40)).save(images / "truncated.png")
    data = (images / "truncated.png").read_bytes()
    (images / "truncated.png").write_bytes(data[: len(data) // 2])
    (images / "zero.jpg").write_bytes(b"")
    (images / "readme.txt").write_text("hello")
    Image.new("RGB", (8, 8)).save(images / "tiny.png")
    Image.new("I;16", (40, 40)).save(images / "deep.png")

    manifest = shards.write_shards(folder(str(images)), tmp_path / "out", **{**OPTIONS, "source": "folder"})
    assert len(manifest) == 10
    assert (manifest.status == "written").sum() == 5
    reasons = manifest.set_index(manifest.origin.str.split("/").str[-1]).reason
    assert reasons["zero.jpg"] == "empty file (0 bytes)"
    assert reasons["readme.txt"].startswith("not an image")
    assert "truncated" in reasons["truncated.png"] or "unreadable" in reasons["truncated.png"]
    assert reasons["tiny.png"].startswith("too small")
    assert "I;16" in reasons["deep.png"]
    assert manifest[manifest.status == "written"].reason.isna().all()


def test_batches_stream_uint8_images(tmp_path):
    manifest = shards.write_shards(synthetic(64, 0, 16), tmp_path, **OPTIONS)
    batch = next(shards.batches(tmp_path, "train", 8, seed=0, shuffle_buffer=10))
    assert batch.shape == (8, 3, 16, 16) and batch.dtype == torch.uint8
    fixed = shards.first_images(tmp_path, "test", 5)
    assert fixed.shape == (5, 3, 16, 16)
    assert torch.equal(fixed, shards.first_images(tmp_path, "test", 5))
    n_test = (manifest.split == "test").sum()
    assert len(shards.first_images(tmp_path, "test", 10_000)) == n_test  # the whole split when asked for more


def test_grayscale_batches_have_one_channel(tmp_path):
    shards.write_shards(synthetic(20, 0, 16), tmp_path, **{**OPTIONS, "channels": 1})
    assert next(shards.batches(tmp_path, "train", 4, seed=0)).shape == (4, 1, 16, 16)


def test_images_by_key_and_factors_come_back_from_the_shards(tmp_path):
    manifest = shards.write_shards(synthetic(30, 0, 16), tmp_path, **OPTIONS)
    keys = manifest.key.iloc[[2, 17, 29]].tolist()
    images = shards.images_by_key(tmp_path, manifest, keys)
    items = {item.key: item for item in synthetic(30, 0, 16)}
    for key in keys:
        assert np.array_equal(images[key], np.asarray(items[key].image))
    factors = shards.factor_table(manifest)
    assert factors.loc[keys[0], "background"] == items[keys[0]].factors["background"]
    assert set(factors.foreground) <= {"none", "disk", "square", "triangle", "ring"}


def _digests(images: torch.Tensor) -> list[str]:
    return [hashlib.sha256(image.numpy().tobytes()).hexdigest() for image in images]


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 4 workers on a 2-core machine
def test_loader_workers_share_out_the_shards_and_repeat_for_a_seed(tmp_path):
    shards.write_shards(synthetic(80, 0, 16), tmp_path, **{**OPTIONS, "test_fraction": 0.0, "samples_per_shard": 20})
    everything = sorted(d for _, images in shards.read_batches(shards.shard_paths(tmp_path, "train"), 20)
                        for d in _digests(images))
    assert len(set(everything)) == 80

    def first(n_batches, seed=0, workers=2, shuffle_buffer=1):
        stream = shards.batches(tmp_path, "train", 10, seed=seed, shuffle_buffer=shuffle_buffer, workers=workers)
        return [next(stream) for _ in range(n_batches)]

    for workers in (0, 2):  # one epoch (80 images, no shuffle buffer): each image once
        assert sorted(_digests(torch.cat(first(8, workers=workers)))) == everything
    epoch = first(8)  # the loader takes the workers' batches in turn
    worker_0, worker_1 = (set(_digests(torch.cat(epoch[w::2]))) for w in (0, 1))
    assert len(worker_0) == len(worker_1) == 40 and not worker_0 & worker_1

    a, b = first(12, seed=3, shuffle_buffer=30), first(12, seed=3, shuffle_buffer=30)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(torch.cat(a), torch.cat(first(12, seed=4, shuffle_buffer=30)))
    assert next(shards.batches(tmp_path, "train", 10, seed=0, workers=8)).shape == (10, 3, 16, 16)  # 4 shards: 4 workers
