import hashlib
import json
import multiprocessing
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from semcore import shards
from semcore.sources import folder, synthetic

OPTIONS = dict(source="synthetic", size=16, channels=3, min_size=16, test_fraction=0.25, seed=0, samples_per_shard=30)
RERUN = "rerun it with `snakemake --forcerun shard`"


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
    assert (manifest.status == "written").sum() == 6
    reasons = manifest.set_index(manifest.origin.str.split("/").str[-1]).reason
    assert reasons["zero.jpg"] == "empty file (0 bytes)"
    assert reasons["readme.txt"].startswith("not an image")
    assert "truncated" in reasons["truncated.png"] or "unreadable" in reasons["truncated.png"]
    assert reasons["tiny.png"].startswith("too small")
    assert manifest.set_index(reasons.index).transforms["deep.png"] == "16-bit scaled to 8-bit"
    assert manifest[manifest.status == "written"].reason.isna().all()


def test_the_index_lists_each_shard_and_stray_files_are_not_read(tmp_path):
    manifest = shards.write_shards(synthetic(100, 0, 16), tmp_path, **OPTIONS)
    index = json.loads((tmp_path / "index.json").read_text())
    assert index == {p.name: {"samples": int((manifest.shard == p.name).sum()), "bytes": p.stat().st_size}
                     for p in tmp_path.glob("*.tar")}
    shutil.copy(tmp_path / "train-000000.tar", tmp_path / "train-000099.tar")  # a stray file
    assert shards.shard_paths(tmp_path, "train") == [str(tmp_path / name) for name in sorted(index)
                                                       if name.startswith("train-")]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_truncated_or_missing_shard_or_index_is_named(tmp_path):
    shards.write_shards(synthetic(100, 0, 16), tmp_path, **OPTIONS)
    shard = tmp_path / "train-000001.tar"
    whole = shard.read_bytes()
    shard.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(shards.CorruptShard) as refused:
        shards.shard_paths(tmp_path, "train")
    assert str(refused.value) == (f"{shard}: {len(whole) // 2} bytes, the shard index says {len(whole)}: truncated or "
                                  f"replaced; {RERUN}")
    with pytest.raises(shards.CorruptShard, match=f"{shard}: unreadable after sample '.*' \\(unexpected end of data"):
        list(shards.read_batches([str(shard)], 8))
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=f"{shard}: missing, the shard index lists it"):
        shards.shard_paths(tmp_path, "train")
    (tmp_path / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match="index.json: missing: the shards in .* predate the shard index"):
        shards.shard_paths(tmp_path, "test")


def overwrite(shard: Path, offset: int) -> None:
    """512 bytes of garbage at `offset`, the shard's size kept: only reading can tell."""
    data = bytearray(shard.read_bytes())
    data[offset:offset + 512] = b"\xab" * 512
    shard.write_bytes(bytes(data))


def test_garbage_in_a_shard_is_an_error_naming_it_and_the_member_never_a_silent_loss(tmp_path):
    shards.write_shards(synthetic(20, 0, 16), tmp_path, **{**OPTIONS, "test_fraction": 0.0})
    shard = tmp_path / "train-000000.tar"
    members, original = tarfile.open(shard).getmembers(), shard.read_bytes()  # k0.json, k0.png, k1.json, …
    overwrite(shard, members[6].offset)  # sample 3's first header: tarfile takes garbage there for the end
    with pytest.raises(shards.CorruptShard) as refused:
        list(shards.read_batches(shards.shard_paths(tmp_path, "train"), 8))
    assert str(refused.value) == (f"{shard}: 3 samples, the shard index says 20: cut short after sample "
                                  f"{members[5].name.removesuffix('.png')!r}, or replaced; {RERUN}")

    shard.write_bytes(original)
    overwrite(shard, members[3].offset_data)  # sample 1's PNG
    with pytest.raises(shards.CorruptShard, match=f"{shard}: member {members[3].name} is unreadable"):
        next(shards.batches(tmp_path, "train", 8, seed=0, shuffle_buffer=1))


class Payload:
    """Unpickling this would write a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return Path(self.path).write_text, ("ran",)


def test_a_sample_with_a_foreign_member_is_refused_not_decoded(tmp_path):
    shards.write_shards(synthetic(10, 0, 16), tmp_path, **{**OPTIONS, "test_fraction": 0.0})
    shard = tmp_path / "train-000000.tar"
    samples = list(wds.tarfile_to_samples()([dict(url=str(shard))]))
    samples[3]["pyd"] = pickle.dumps(Payload(tmp_path / "ran"))  # what WebDataset's decoders would unpickle
    with wds.TarWriter(str(shard), encoder=False, mtime=0) as writer:
        for sample in samples:
            writer.write({k: v for k, v in sample.items() if k == "__key__" or not k.startswith("__")})
    index = json.loads((tmp_path / "index.json").read_text())
    index[shard.name]["bytes"] = shard.stat().st_size  # only reading can tell
    (tmp_path / "index.json").write_text(json.dumps(index))

    key = samples[3]["__key__"]
    with pytest.raises(shards.CorruptShard) as refused:
        list(shards.read_batches(shards.shard_paths(tmp_path, "train"), 4))
    assert str(refused.value) == (f"{shard}: sample {key!r} has the members ['{key}.json', '{key}.png', '{key}.pyd']; "
                                  "a shard's samples hold a .png and a .json, and nothing else is read")
    with pytest.raises(shards.CorruptShard, match=f"{key}.pyd"):
        next(shards.batches(tmp_path, "train", 10, seed=0))
    assert not (tmp_path / "ran").exists()


def test_a_killed_writer_leaves_only_its_own_temporary_files_and_a_rerun_writes_beside_them(tmp_path):
    def killed_after_five_images():
        def items():
            yield from synthetic(5, 0, 16)
            os._exit(1)  # killed mid-shard: nothing closed, nothing renamed

        shards.write_shards(items(), tmp_path, **OPTIONS)

    orphan = multiprocessing.get_context("fork").Process(target=killed_after_five_images)
    orphan.start()
    orphan.join()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left and all(name.endswith(".tmp") for name in left)  # no shard, no index that looks complete

    manifest = shards.write_shards(synthetic(50, 0, 16), tmp_path, **OPTIONS)  # the rerun
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == left  # its own names: the orphan's files untouched
    assert sum(len(images) for _, images in shards.read_batches(
        shards.shard_paths(tmp_path, "train") + shards.shard_paths(tmp_path, "test"), 16)) == len(manifest)


def test_a_split_left_empty_is_refused_naming_data_test_fraction(tmp_path):
    with pytest.raises(ValueError, match=r"^data.synthetic: none of the 3 usable images fell in the test split: add "
                                         r"images or raise data.test_fraction \(0.01\)$"):
        shards.write_shards(synthetic(3, 0, 16), tmp_path / "a", **{**OPTIONS, "test_fraction": 0.01})
    with pytest.raises(ValueError, match=r"^data.synthetic: all 3 usable images fell in the test split: add images "
                                         r"or lower data.test_fraction$"):
        shards.write_shards(synthetic(3, 0, 16), tmp_path / "b", **{**OPTIONS, "test_fraction": 0.99})


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
