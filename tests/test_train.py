import itertools
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
import yaml
from snakemake.utils import validate

from semcore import scenes, shards
from semcore import train as train_module
from semcore.model import UNetConfig, UNetFlex, initial_model
from semcore.plan.names import snapshot_name
from semcore.plan.schema import SCHEMA
from semcore.plan.settings import train_config
from semcore.runtime import Precision
from semcore.sources import synthetic
from semcore.train import TrainConfig, denoising_loss, launch, learning_rate, sample_sigmas, train, weights_digest

from conftest import REPO

MODEL = UNetConfig(channels=[8, 16, 32])


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    shards.write_shards(synthetic(160, 0, 16), out, source="synthetic", size=16, channels=3, min_size=16,
                        test_fraction=0.2, seed=0, samples_per_shard=50)
    return out


def test_sigma_distributions_cover_their_range():
    for dist in ("uniform", "quadratic"):
        s = sample_sigmas(20000, TrainConfig(sigma_min=0.04, sigma_max=0.64, sigma_distribution=dist))
        assert 0.04 <= s.min() and s.max() <= 0.64
    quadratic = sample_sigmas(20000, TrainConfig(sigma_min=0.0, sigma_max=1.0))
    assert abs(quadratic.median() - 0.25) < 0.02  # √σ uniform: the median σ is 0.5²


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = UNetFlex(MODEL)
    x = torch.stack([torch.from_numpy(scenes.render(0, i, 16)[0]) for i in range(16)]).permute(0, 3, 1, 2) / 255
    sigmas = torch.full((16,), 0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        torch.manual_seed(1)  # the same noise each step: the loss must fall
        loss = denoising_loss(model, x, sigmas, "none")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_train_writes_model_log_and_denoises(shard_dir, tmp_path):
    config = TrainConfig(steps=60, batch_size=16, eval_every=30, eval_images=16, log_every=10, lr=3e-3)
    table = train(MODEL, config, shard_dir, tmp_path / "run", tmp_path / "model.pt")
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [10, 20, 30, 40, 50, 60]
    assert {r["step"] for r in records if r["kind"] == "eval"} == {0, 30, 60}
    assert {row["sigma"] for row in table} == {0.1, 0.3}
    at_03 = next(row for row in table if row["sigma"] == 0.3)
    assert at_03["psnr_denoised"] > at_03["psnr_noisy"]
    assert UNetFlex.from_pretrained(tmp_path / "model.pt").config == MODEL


RUN_IN_CHILD = """
import sys
from semcore.model import UNetConfig
from semcore.train import TrainConfig, train
train(UNetConfig(channels=[8, 16, 32]), TrainConfig(steps=1000, batch_size=8, checkpoint_every=5, eval_images=8,
      eval_every=10_000), sys.argv[1], sys.argv[2], sys.argv[3])
"""


def test_a_killed_run_resumes_from_its_last_checkpoint(shard_dir, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-c", RUN_IN_CHILD, str(shard_dir), str(run), str(tmp_path / "model.pt")]
    child = subprocess.Popen(args)
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").exists() or _checkpoint_step(run) < 10:
        assert time.time() < deadline and child.poll() is None, "no checkpoint written"
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = _checkpoint_step(run)
    assert 10 <= killed_at < 1000 and not (tmp_path / "model.pt").exists()

    subprocess.run(args, check=True)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    resumes = [r for r in records if r["kind"] == "resume"]
    assert [r["step"] for r in resumes] == [killed_at]
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 1000  # no step logged twice
    assert _checkpoint_step(run) == 1000 and (tmp_path / "model.pt").exists()


def _checkpoint_step(run) -> int:
    try:
        return torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    except (EOFError, RuntimeError, FileNotFoundError):
        return -1


def test_the_same_options_train_the_same_weights(shard_dir, tmp_path):
    config = TrainConfig(steps=6, batch_size=8, eval_images=8)
    for run in ("a", "b"):
        train(MODEL, config, shard_dir, tmp_path / run, tmp_path / f"{run}.pt")
    a, b = (weights_digest(UNetFlex.from_pretrained(tmp_path / f"{run}.pt")) for run in ("a", "b"))
    assert a == b


def test_changed_options_start_afresh(shard_dir, tmp_path):
    base = dict(steps=10, batch_size=8, checkpoint_every=5, eval_images=8)
    train(MODEL, TrainConfig(**base), shard_dir, tmp_path, tmp_path / "model.pt")
    train(MODEL, TrainConfig(**base, lr=5e-4), shard_dir, tmp_path, tmp_path / "model.pt")
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert not [r for r in records if r["kind"] == "resume"]
    assert [r["step"] for r in records if r["kind"] == "train"] == [10]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(shard_dir, tmp_path):
    config = TrainConfig(steps=50, batch_size=8, lr=1e12, checkpoint_every=1, eval_images=8)
    with pytest.raises(FloatingPointError, match="non-finite loss .* at step"):
        train(MODEL, config, shard_dir, tmp_path, tmp_path / "model.pt")
    snapshot = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert all(torch.isfinite(p).all() for p in snapshot["model"].values())
    assert snapshot["step"] >= 1 and not (tmp_path / "model.pt").exists()


def test_snapshots_are_kept_at_step_0_every_snapshot_every_and_the_last_step(shard_dir, tmp_path):
    config = TrainConfig(steps=25, batch_size=8, checkpoint_every=5, snapshot_every=10, eval_images=8)
    assert config.snapshot_steps() == [0, 10, 20, 25]
    run, snapshots = tmp_path / "run", tmp_path / "snapshots"
    train(MODEL, config, shard_dir, run, tmp_path / "model.pt", snapshot_dir=snapshots)
    assert sorted(p.name for p in snapshots.iterdir()) == [snapshot_name(s) for s in (0, 10, 20, 25)]
    untrained = UNetFlex.from_pretrained(snapshots / snapshot_name(0))
    assert weights_digest(untrained) == weights_digest(initial_model(MODEL, config.seed))  # the baseline network
    assert weights_digest(UNetFlex.from_pretrained(snapshots / snapshot_name(25))) == \
        weights_digest(UNetFlex.from_pretrained(tmp_path / "model.pt"))
    digests = {s: weights_digest(UNetFlex.from_pretrained(snapshots / snapshot_name(s))) for s in (0, 10, 20)}
    assert len(set(digests.values())) == 3

    # Killed after step 15: the resumed run keeps the snapshots taken before (step 10's is not retaken).
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    shutil.rmtree(snapshots)
    train(MODEL, config, shard_dir, run, tmp_path / "model.pt", snapshot_dir=snapshots)  # resumes at 25: nothing to do
    assert weights_digest(UNetFlex.from_pretrained(snapshots / snapshot_name(10))) == digests[10]
    # A grid changed after training passed it cannot be filled: said, naming the key.
    with pytest.raises(FileNotFoundError, match=r"train.snapshot_every: no weights kept at steps \[5, 15\]"):
        train(MODEL, replace(config, snapshot_every=5), shard_dir, run, tmp_path / "model.pt", snapshot_dir=snapshots)
    assert checkpoint["step"] == 25


def test_two_ddp_processes_train_one_model_and_resume(shard_dir, tmp_path):
    run, model_path = tmp_path / "run", tmp_path / "model.pt"
    config = TrainConfig(steps=20, batch_size=16, log_every=5, eval_every=10, checkpoint_every=10, eval_images=8)
    launch(2, MODEL, config, shard_dir, run, model_path, threads=2, snapshot_dir=tmp_path / "snapshots")  # gloo on CPU
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [snapshot_name(s) for s in (0, 20)]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20]  # rank 0 alone logs
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 0, 10, 10, 20, 20]
    [replicas] = [r for r in records if r["kind"] == "replicas"]
    saved = UNetFlex.from_pretrained(model_path)
    assert replicas["processes"] == 2 and replicas["sha256"] == [weights_digest(saved)] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "run", "snapshots"]  # no stray temporary files

    snapshot = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save(snapshot | {"step": 10}, run / "checkpoint.pt")  # as if killed after step 10
    launch(2, MODEL, config, shard_dir, run, model_path, threads=2)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "resume"] == [10]
    assert [r["step"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20]
    assert _checkpoint_step(run) == 20


class Zero(torch.nn.Module):
    def forward(self, y):
        return torch.zeros_like(y)


def test_the_weighted_loss_is_the_authors_one_over_sigma_squared():
    # x̂ = 0 and x = 0.5: each image's 48 values miss by 0.5, Σ(x̂ − x)² = 12 whatever the noise.
    x, sigmas = torch.full((2, 3, 4, 4), 0.5), torch.tensor([0.5, 0.25])
    assert denoising_loss(Zero(), x, sigmas, "none").item() == pytest.approx(12)
    # Σ((x̂ − x)/σ)² per image, averaged over the batch: (12 / 0.25 + 12 / 0.0625) / 2.
    assert denoising_loss(Zero(), x, sigmas, "inv_sigma_squared").item() == pytest.approx(120)


def test_epochs_convert_to_steps_with_the_number_of_training_images():
    config = TrainConfig(epochs=2.5, lr_halve_every_epochs=1, batch_size=10)
    assert config.steps_per_epoch(95) == 10  # the last, partial batch counts, as in the authors' loader
    resolved = config.in_steps(95)
    assert (resolved.steps, resolved.lr_halve_every, resolved.epochs, resolved.lr_halve_every_epochs) == (25, 10, None, None)
    assert [learning_rate(resolved, step) for step in (0, 9, 10, 19, 20)] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]
    default = TrainConfig()
    assert (default.steps, default.lr_halve_every) == (3000, 1000) and default.in_steps(95) == default
    with pytest.raises(ValueError, match="train.steps, train.epochs"):
        TrainConfig(steps=10, epochs=1)
    with pytest.raises(ValueError, match="epochs with TrainConfig.in_steps"):
        train(MODEL, config, "unused", "unused", "unused")


def test_the_imagenet64_config_is_the_papers_recipe():
    """Prints the σ quantiles and the lr at each 100-epoch mark (pytest -s shows them)."""
    config = yaml.safe_load((REPO / "configs" / "imagenet64-cluster.yaml").read_text())
    validate(config, str(SCHEMA))
    train_images = round(1_281_167 * (1 - config["data"]["test_fraction"]))  # ImageNet64's train set, less the test split
    recipe = train_config(config).in_steps(train_images)
    assert (recipe.batch_size, recipe.lr, recipe.loss_weighting, recipe.sigma_distribution) == (512, 1e-3, "none", "quadratic")
    per_epoch = recipe.steps_per_epoch(train_images)
    assert recipe.steps == 1000 * per_epoch and recipe.lr_halve_every == 100 * per_epoch

    sigmas = sample_sigmas(200_000, recipe, generator=torch.Generator().manual_seed(0))
    levels = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    quantiles = torch.quantile(sigmas, torch.tensor(levels))
    print(f"\nimagenet64: {train_images:,} training images, {per_epoch:,} steps per epoch, {recipe.steps:,} steps")
    print("σ quantiles: " + ", ".join(f"{q:.0%} {v:.4f}" for q, v in zip(levels, quantiles.tolist())))
    assert sigmas.max() <= 1 and sigmas.min() >= 0
    assert quantiles[2].item() == pytest.approx(0.25 ** 2, abs=0.01)  # √σ uniform: the q-quantile is q²
    assert quantiles[3].item() == pytest.approx(0.25, abs=0.01)
    for epoch in range(0, 1001, 100):
        step = min(epoch * per_epoch, recipe.steps - 1)
        lr = learning_rate(recipe, step)
        print(f"epoch {epoch:4d} (step {step:9,d}): lr {lr:.3e}")
        assert lr == pytest.approx(1e-3 * 0.5 ** min(epoch // 100, 9))
    assert learning_rate(recipe, 100 * per_epoch - 1) == 1e-3  # the whole 100th epoch still at the first lr


def _records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_bf16_autocast_trains_and_a_run_resumes_in_another_precision(shard_dir, tmp_path):
    run, model_path = tmp_path / "run", tmp_path / "model.pt"
    config = TrainConfig(steps=60, batch_size=16, log_every=10, eval_every=60, checkpoint_every=30, eval_images=16,
                         lr=3e-3)
    train(MODEL, config, shard_dir, run, model_path, Precision(autocast="bf16"))
    losses = [r["loss"] for r in _records(run) if r["kind"] == "train"]
    assert losses[-1] < 0.5 * losses[0]
    options = json.loads((run / "options.json").read_text())
    assert options["runtime"]["autocast"] == "bf16"

    snapshot = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save(snapshot | {"step": 30}, run / "checkpoint.pt")  # as if killed after step 30
    train(MODEL, config, shard_dir, run, model_path, Precision(autocast="none"))  # precision is not in the hash
    records = _records(run)
    assert [r["step"] for r in records if r["kind"] == "resume"] == [30]
    assert [(r["step"], r["autocast"]) for r in records if r["kind"] == "runtime"] == [(0, "bf16"), (30, "none")]


def test_a_resumed_run_draws_new_noise_reproducibly(shard_dir, tmp_path, monkeypatch):
    """The noise z of each step, as denoising_loss draws it: a resumed run does not replay its start's."""
    drawn = []

    def recording(model, x, sigmas, weighting, generator):
        replay = torch.Generator().set_state(generator.get_state())
        drawn.append(torch.empty_like(x).normal_(generator=replay))
        return denoising_loss(model, x, sigmas, weighting, generator)

    monkeypatch.setattr(train_module, "denoising_loss", recording)
    run, config = tmp_path / "run", TrainConfig(steps=4, batch_size=8, checkpoint_every=2, eval_images=8)
    train(MODEL, config, shard_dir, run, tmp_path / "model.pt")
    from_start, drawn[:] = drawn[:], []
    snapshot = torch.load(run / "checkpoint.pt", weights_only=True)
    for _ in range(2):  # resumed at step 2, twice
        torch.save(snapshot | {"step": 2}, run / "checkpoint.pt")
        train(MODEL, config, shard_dir, run, tmp_path / "model.pt")
    first_resume, second_resume = drawn[:2], drawn[2:]
    assert len(from_start) == 4 and len(first_resume) == 2
    assert not any(torch.equal(z, z0) for z in first_resume for z0 in from_start)
    assert all(torch.equal(a, b) for a, b in zip(first_resume, second_resume))


def test_a_non_finite_loss_between_checks_keeps_the_checkpoint_before_it(shard_dir, tmp_path, monkeypatch):
    """Losses are read back every 5 steps here: a NaN at step 7 is found at step 10, and the step-5
    checkpoint, written after steps 1–5 were checked, stays on disk."""
    calls = itertools.count(1)

    def poisoned(*args, **kwargs):
        loss = denoising_loss(*args, **kwargs)
        return loss * float("nan") if next(calls) == 7 else loss

    monkeypatch.setattr(train_module, "denoising_loss", poisoned)
    config = TrainConfig(steps=20, batch_size=8, log_every=5, checkpoint_every=5, eval_images=8)
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan at step 7 .*found at step 10.*step 5\) is kept"):
        train(MODEL, config, shard_dir, tmp_path, tmp_path / "model.pt")
    snapshot = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert snapshot["step"] == 5 and all(torch.isfinite(p).all() for p in snapshot["model"].values())
    assert [r["step"] for r in _records(tmp_path) if r["kind"] == "train"] == [5]


def test_an_imported_network_is_evaluated_and_logged_as_a_trained_one(shard_dir, tmp_path):
    config = TrainConfig(steps=4, batch_size=8, eval_images=8)
    train(MODEL, config, shard_dir, tmp_path / "trained", tmp_path / "trained.pt")
    run, model_path, snapshots = tmp_path / "run", tmp_path / "model.pt", tmp_path / "snapshots"
    table = train_module.import_pretrained(MODEL, config, tmp_path / "trained.pt", "semcore", shard_dir, run,
                                           model_path, snapshots)
    assert table == [{k: r[k] for k in ("sigma", "psnr_noisy", "psnr_denoised")}
                     for r in _records(tmp_path / "trained") if r["kind"] == "eval" and r["step"] == 4]
    assert [(r["kind"], r["step"]) for r in _records(run)] == [("import", 0)] + [("eval", 0)] * len(table)
    options = json.loads((run / "options.json").read_text())
    assert list(options) == ["model", "pretrained"] and options["pretrained"]["format"] == "semcore"
    assert weights_digest(UNetFlex.from_pretrained(model_path)) == options["pretrained"]["sha256"]
    assert sorted(p.name for p in snapshots.iterdir()) == [snapshot_name(0)]
