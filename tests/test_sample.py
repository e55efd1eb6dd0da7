"""Self-guided sampling on a tiny model (unit tests), its settings, and the sampling stage of the tiny
workflow run."""
import logging
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
import yaml
from snakemake.utils import validate

from semcore import cluster, sample, shards
from semcore.images import decode_png
from semcore.model import UNetConfig, UNetFlex
from semcore.phi import phi_schema
from semcore.plan.checks import check
from semcore.plan.sampler import designed_steps, resolved_ascent, unconditional_sampler
from semcore.plan.schema import SCHEMA, ConfigError
from semcore.sources import synthetic
from semcore.tables import ParquetSink, as_uint8, to_arrow, vectors

from conftest import TINY_CONFIG, planned_jobs, write_config

T, S, N_NOISE = 2, 3, 2  # targets, samples per target, noise draws


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return UNetFlex(UNetConfig(channels=[8, 16, 32])).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(T, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def rows():
    return torch.arange(T).repeat_interleave(S)


def start():
    return torch.full((3, 16, 16), 0.5)


def test_matching_lowers_the_phi_error_and_stops_converged_rows(model, images):
    goal = sample.Target(images=images, n_noise=N_NOISE).phi(model, torch.arange(T), torch.full((T,), 0.1), generator(), Counter())
    y = torch.rand(T, 3, 16, 16, generator=generator(2))
    with torch.no_grad():
        before = sample.relative_error(model.middle_means(y), goal)
        own = model.middle_means(y)
    # Row 0 chases the target; row 1 is given its own φ: it has converged before any step.
    calls = Counter()
    matched, error, steps = sample.match_phi(model, y, torch.stack([goal[0], own[1]]), sample.Matching(lr=0.01, max_iter=40), calls)
    assert error[0] < 0.5 * before[0]
    with torch.no_grad():
        assert torch.allclose(sample.relative_error(model.middle_means(matched[:1]), goal[:1]), error[:1], rtol=1e-4)
    assert steps.tolist()[1] == 0 and torch.equal(matched[1], y[1])
    # Row 1 leaves the batch after the first evaluation: every later call runs on row 0 alone.
    assert 0 < steps[0] <= 40 and calls["phi_grad", 2] == calls["phi_grad_backward", 2] == 1
    assert calls["phi_grad_backward", 1] == steps[0] - 1


def test_a_schedule_of_k_steps_makes_the_expected_network_calls(model, images):
    k, max_iter = 3, 4
    target = sample.Target(images=images, n_noise=N_NOISE)
    result = sample.fixed_schedule(model, target, rows(), start(), [0.5, 0.2, 0.05][:k],
                                   sample.Matching(tol=0.0, max_iter=max_iter), generator())
    r = T * S
    assert result.calls == Counter({("phi", r * N_NOISE): k, ("phi_grad", r): k * (max_iter + 1),
                                    ("phi_grad_backward", r): k * max_iter, ("denoise", r): k})
    assert result.matching_steps.tolist() == [k * max_iter] * r
    assert result.phi_error.shape == (r, k) and np.isfinite(result.phi_error).all()


def draw_options(kind: str) -> dict:
    """sample.draw's settings for a few steps of the sampler `kind`: fixed, adaptive or unconditional."""
    return dict(guided=kind != "unconditional", algorithm=kind, schedule=dict(sigma_max=0.5, sigma_min=0.05, steps=3),
                ascent_options=dict(sigma_0=0.5, sigma_final=0.2, h0=0.3, beta=0.5, h_schedule=True, max_steps=8),
                matching=dict(lr=0.01, tol=0.01, max_iter=3))


@pytest.mark.parametrize("kind", ["fixed", "adaptive", "unconditional"])
def test_samples_are_finite_in_range_and_reproducible(model, images, kind):
    target = sample.Target(images=images, n_noise=N_NOISE, top_k=5)
    options = draw_options(kind)
    first = sample.draw(model, target, rows(), start(), **options, generator=generator(0))
    again = sample.draw(model, target, rows(), start(), **options, generator=generator(0))
    other = sample.draw(model, target, rows(), start(), **options, generator=generator(1))
    assert first.images.shape == (T * S, 3, 16, 16) and torch.isfinite(first.images).all()
    assert first.images.min() >= 0 and first.images.max() <= 1
    assert torch.equal(first.images, again.images) and not torch.equal(first.images, other.images)
    assert (first.steps >= 1).all() and (first.steps <= (3 if kind == "fixed" else 8)).all()


# Recorded before the samplers' bookkeeping moved into sample.Rows (and the same since): Σ pixels of the
# samples, their steps and matching steps; then with the denoiser's first row NaN at its 2nd call.
RECORDED = {"fixed": (3.684701316065457, [3] * 6, [9] * 6, 3.5000591872526456, [1] + [3] * 5),
            "adaptive": (3.7400493875750103, [6] * 6, [18] * 6, 3.356825003864401, [1] + [6] * 5),
            "unconditional": (3.6668573720822337, [6] * 6, [0] * 6, 3.3667558482738116, [1] + [6] * 5)}


@pytest.mark.parametrize("kind", ["fixed", "adaptive", "unconditional"])
def test_seeded_samples_are_those_recorded(model, images, kind):
    total, steps, matching_steps, failing_total, failing_steps = RECORDED[kind]
    target, options = sample.Target(images=images, n_noise=N_NOISE, top_k=5), draw_options(kind)
    result = sample.draw(model, target, rows(), start(), **options, generator=generator(0))
    assert result.images.double().sum().item() == pytest.approx(total, rel=1e-6)
    assert result.steps.tolist() == steps and result.matching_steps.tolist() == matching_steps
    failing = sample.draw(NaNAtCall(model, 2), target, rows(), start(), **options, generator=generator(0))
    assert failing.images.double().sum().item() == pytest.approx(failing_total, rel=1e-6)
    assert failing.steps.tolist() == failing_steps and failing.failed_step.tolist() == [2] + [0] * 5
    # Rows stopping at different steps leave the batch (8 rows → 3 once 5 have stopped).
    shrinking = sample.ascent(model, torch.arange(8), start(), sigma_0=0.3, sigma_final=0.25, h0=0.5, beta=0.5,
                              h_schedule=False, max_steps=30, generator=generator())
    assert shrinking.images.double().sum().item() == pytest.approx(4.611985246004849, rel=1e-6)
    assert shrinking.steps.tolist() == [5, 5, 4, 4, 4, 4, 4, 5]
    assert shrinking.calls == Counter({("denoise", 8): 4, ("denoise", 3): 1})


def test_ascent_stops_each_row_on_its_own(model):
    # Each row stops when its own σ estimate falls below σ_final; later steps run on the rest only.
    result = sample.ascent(model, torch.arange(4), start(), sigma_0=0.3, sigma_final=0.25, h0=0.5, beta=0.5,
                           h_schedule=False, max_steps=30, generator=generator())
    stopped = result.steps.tolist()
    assert len(set(stopped)) > 1
    for row, n in enumerate(stopped):
        assert np.isfinite(result.sigma[row, :n]).all() and np.isnan(result.sigma[row, n:]).all()
        if n < 30:
            assert result.sigma[row, n - 1] < 0.25 <= result.sigma[row, : n - 1].min(initial=np.inf)
    # A row computed after it stopped is waste, bounded: finished rows leave once a quarter has finished.
    computed = sum(result.calls[("denoise", b)] * b for b in range(1, 5))
    assert sum(stopped) <= computed <= sum(stopped) / sample.SHRINK


def test_rows_stopped_by_the_step_cap_are_flagged_and_logged(model, caplog):
    options = dict(sigma_0=0.3, sigma_final=0.25, h0=0.5, beta=0.5, h_schedule=False)
    free = sample.ascent(model, torch.arange(4), start(), **options, max_steps=30, generator=generator())
    cap = int(free.steps.min())  # the rows stopping later than the fastest one are stopped by this cap
    assert free.reached.all() and (free.steps > cap).any()
    with caplog.at_level(logging.WARNING, logger="semcore.sample"):
        capped = sample.ascent(model, torch.arange(4), start(), **options, max_steps=cap, generator=generator())
    assert capped.reached.tolist() == (free.steps == cap).tolist()  # the same trajectories up to the cap
    assert f"{int((free.steps > cap).sum())} of 4 samples stopped by max_steps {cap}" in caplog.text


def test_each_sample_draws_its_own_target_phi(model, images, monkeypatch):
    # The goals the fixed schedule hands to the matching step: two samples of a conditioning image get
    # independent noise on it (as in the authors' code); a φ vector target is the same for all its samples.
    goals = []

    def recording(model, y, target, *args, **kwargs):
        goals.append(target)
        return y, torch.zeros(len(y)), torch.zeros(len(y), dtype=torch.long)

    monkeypatch.setattr(sample, "match_phi", recording)
    for kind in (dict(images=images, n_noise=N_NOISE), dict(vectors=torch.rand(T, 32))):
        goals.clear()
        sample.fixed_schedule(model, sample.Target(**kind), rows(), start(), [0.5, 0.2], sample.Matching(), generator())
        for goal in goals:
            first, second = goal[rows() == 0][:2]
            assert torch.equal(first, second) == ("vectors" in kind)


def test_the_start_images_are_the_training_means_or_grey(tmp_path):
    shards.write_shards(synthetic(30, 0, 16), tmp_path, source="synthetic", size=16, channels=3, min_size=16,
                        test_fraction=0.2, seed=0, samples_per_shard=10)
    paths = shards.shard_paths(tmp_path, "train")
    pixels = torch.cat([images for _, images in shards.read_batches(paths, 8)]).double() / 255
    colour = sample.start_image(paths, "mean_colour")
    assert colour.shape == (3, 16, 16)
    assert torch.allclose(colour, pixels.mean(dim=(0, 2, 3)).float().view(3, 1, 1).expand(3, 16, 16), atol=1e-6)
    assert torch.allclose(sample.start_image(paths, "mean_image"), pixels.mean(dim=0).float(), atol=1e-6)
    assert torch.equal(sample.start_image(paths, "grey"), torch.full((3, 16, 16), 0.45))


def test_the_nearest_phi_search_reads_chunks_and_matches_brute_force():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(50, 8)).astype(np.float32)
    meta = pd.DataFrame({"key": [f"k{i}" for i in range(50)], "label": np.arange(50) % 3})
    queries, exclude = data[[3, 40]], np.array([3, -1])  # query 0 is row 3, never its own neighbour
    chunks = [(meta[i:i + 7].reset_index(drop=True), data[i:i + 7]) for i in range(0, 50, 7)]  # the last of 1 row
    found = cluster.nearest_in_chunks(queries, iter(chunks), 4, exclude=exclude)
    distances = np.linalg.norm(data[None].astype(np.float64) - queries[:, None], axis=2)
    distances[0, 3] = np.inf
    for q in range(2):
        mine = found[found["query"] == q]
        assert mine["rank"].tolist() == [0, 1, 2, 3]
        assert mine.row.tolist() == np.argsort(distances[q], kind="stable")[:4].tolist()
        assert mine.key.tolist() == [f"k{i}" for i in mine.row] and mine.label.tolist() == list(mine.row % 3)
        np.testing.assert_allclose(mine.distance, np.sort(distances[q])[:4], rtol=1e-12)
    assert found[found["query"] == 1].distance.iloc[0] == 0  # row 40 itself, not excluded: exactly 0


def simulated_steps(sigma_0, sigma_final, h0, beta, h_schedule, limit=100_000) -> int:
    """The first step t whose σ_t < sigma_final, with σ_1 = σ_0 and σ_{t+1} = (1 − β h_t) σ_t."""
    t = np.arange(1, limit + 1)
    h = h0 * t / (1 + h0 * (t - 1)) if h_schedule else np.full(limit, h0)
    sigma = sigma_0 * np.concatenate([[1.0], np.cumprod(1 - beta * h)])
    return int(np.argmax(sigma < sigma_final)) + 1


@pytest.mark.parametrize("sigma_0, sigma_final, h0, beta, h_schedule, about", [
    (1.0, 0.01, 0.01, 0.01, False, 46_000),  # the authors' function defaults: fixed h
    (1.0, 0.01, 0.01, 0.01, True, 660),  # the same with the growing h_t
    (3.0, 0.04, 0.01, 0.05, False, 8_600),  # the authors' unconditional run
    (0.5, 0.1, 0.3, 0.5, False, 11),
    (0.1, 0.2, 0.01, 0.01, False, 1),  # the first σ estimate is below already
])
def test_the_designed_step_count_follows_the_sigma_recursion(sigma_0, sigma_final, h0, beta, h_schedule, about):
    ascent = dict(sigma_0=sigma_0, sigma_final=sigma_final, h0=h0, beta=beta, h_schedule=h_schedule)
    steps = designed_steps(ascent)
    assert steps == simulated_steps(sigma_0, sigma_final, h0, beta, h_schedule)
    assert abs(steps - about) <= 0.01 * about + 1


def sample_config(**sample_section) -> dict:
    """The tiny workflow config with its sample section replaced, defaults filled by the schema."""
    config = yaml.safe_load(yaml.safe_dump({**TINY_CONFIG, "sample": sample_section}))
    validate(config, str(SCHEMA))
    return config


def test_fixed_h_and_the_authors_presets_are_the_defaults():
    config = sample_config()
    ascent = config["sample"]["ascent"]
    assert ascent["h_schedule"] is False and ascent["max_steps"] is None
    assert config["sample"]["start"] == "mean_colour"
    assert resolved_ascent(ascent)["max_steps"] == 3 * designed_steps(ascent)  # the safety cap
    start, unconditional = unconditional_sampler(config["sample"])
    assert start == "grey" and unconditional == dict(sigma_0=3.0, sigma_final=0.04, h0=0.01, beta=0.05,
                                                     h_schedule=False, max_steps=20000)
    check(config)


def test_the_unconditional_settings_resolve_from_a_preset_or_an_object():
    config = sample_config(unconditional="ascent", start="mean_image", ascent=dict(h_schedule=True, max_steps=900))
    assert unconditional_sampler(config["sample"]) == ("mean_image", config["sample"]["ascent"])
    config = sample_config(unconditional=dict(sigma_0=1.0, start="mean_colour"))
    start, unconditional = unconditional_sampler(config["sample"])
    assert start == "mean_colour" and unconditional["sigma_0"] == 1.0 and unconditional["max_steps"] == 20000


@pytest.mark.parametrize("section, key, designed", [
    (dict(ascent=dict(max_steps=40_000)), r"sample\.ascent\.max_steps", 46_051),
    (dict(ascent=dict(h_schedule=True, max_steps=600)), r"sample\.ascent\.max_steps", 662),
    (dict(unconditional=dict(max_steps=8000)), r"sample\.unconditional\.max_steps", 8_634),
    (dict(unconditional="ascent", ascent=dict(h_schedule=True, max_steps=600)), r"sample\.ascent\.max_steps", 662),
])
def test_a_step_cap_below_the_designed_count_is_refused(section, key, designed):
    with pytest.raises(ConfigError, match=f"{key}: .* takes {designed} steps by design"):
        check(sample_config(**section))


def test_the_clusters_to_sample_are_those_k_means_makes():
    check(sample_config(clusters=dict(k=4)))  # one of cluster.ks
    with pytest.raises(ConfigError, match=r"sample\.clusters\.k: 5 is not one of cluster\.ks \[4\]"):
        check(sample_config(clusters=dict(k=5)))
    config = sample_config()
    config["cluster"]["normalize"] = True  # centroids of φ/‖φ‖: no φ to sample toward
    with pytest.raises(ConfigError, match=r"sample\.clusters\.count: cluster\.normalize"):
        check(config)
    config["sample"]["clusters"]["count"] = 0
    check(config)


def test_top_k_keeps_the_largest_channels():
    phi = torch.tensor([[0.1, 0.5, 0.3, 0.0], [0.4, 0.0, 0.2, 0.9]])
    assert torch.equal(sample.top_k_mask(phi, 2), torch.tensor([[0.0, 0.5, 0.3, 0.0], [0.4, 0.0, 0.0, 0.9]]))
    assert sample.top_k_mask(phi, None) is phi


def test_a_cluster_centroid_is_a_target(model, tmp_path):
    centroids = np.abs(np.random.default_rng(0).normal(size=(3, 32))).astype(np.float32) * 0.05
    path = tmp_path / "centroids.parquet"
    table = pa.table({"cluster": pa.array([0, 1, 2], pa.int32()), "centroid": vectors(centroids)})
    with ParquetSink(path, table.schema) as sink:
        sink.write(table)
    ids, vectors_ = cluster.read_centroids(str(path), clusters=[2, 0])
    assert ids.tolist() == [2, 0] and np.array_equal(vectors_.numpy(), centroids[[2, 0]])
    target = sample.Target(vectors=vectors_)
    y = torch.rand(2, 3, 16, 16, generator=generator(3))
    goal = target.phi(model, torch.arange(2), torch.zeros(2), generator(), Counter())
    with torch.no_grad():
        before = sample.relative_error(model.middle_means(y), goal)
    _, after, _ = sample.match_phi(model, y, goal, sample.Matching(max_iter=30), Counter())
    assert (after < before).all()


def test_matching_toward_a_centroid_lands_nearest_it(model):
    """The guidance step of centroid sampling, on two centroids apart (φ of a flat red image and of black
    and white stripes): from the same grey start, each matched image's φ is nearest its own centroid."""
    red, stripes = torch.zeros(2, 3, 16, 16)
    red[0], red[1:] = 0.9, 0.1
    stripes[:, ::2] = 1.0
    with torch.no_grad():
        centroids = model.middle_means(torch.stack([red, stripes]))
    assert torch.linalg.norm(centroids[0] - centroids[1]) > 0.1 * centroids.norm(dim=1).min()
    start = (0.45 + 0.05 * torch.randn(4, 3, 16, 16, generator=generator())).repeat(2, 1, 1, 1)
    goal = centroids.repeat_interleave(4, dim=0)
    matched, _, _ = sample.match_phi(model, start, goal, sample.Matching(lr=0.01, max_iter=100), Counter())
    with torch.no_grad():
        nearest = torch.cdist(model.middle_means(matched), centroids).argmin(dim=1)
    assert nearest.tolist() == [0] * 4 + [1] * 4, nearest


@pytest.fixture(scope="module")
def train_phi(model, images, tmp_path_factory) -> list[str]:
    """A φ file whose "training set" holds the two targets themselves (keys a and b), at σ = 0."""
    with torch.no_grad():
        train = model.middle_means(images).numpy()
    path = tmp_path_factory.mktemp("phi") / "train-000000.parquet"
    with ParquetSink(path, phi_schema(32, {})) as sink:
        sink.write(pa.table({"key": ["a", "b"], "split": ["train"] * 2, "label": pa.array([0, 1], pa.int32()),
                             "sigma": pa.array([0.0, 0.0]), "phi": vectors(train)}))
    return [str(path)]


class NaNAtCall(torch.nn.Module):
    """The model, except that its denoised image of the batch's first row is NaN at its `call`-th call."""

    def __init__(self, model: UNetFlex, call: int):
        super().__init__()
        self.model, self.call, self.calls = model, call, 0

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        denoised = self.model(y)
        if self.calls == self.call:
            denoised[0] = float("nan")
        return denoised

    def middle_means(self, y: torch.Tensor) -> torch.Tensor:
        return self.model.middle_means(y)


def scored(model, samples: sample.Samples, target: sample.Target, train_phi: list[str]) -> pd.DataFrame:
    """The samples' score table, checked to convert as the rule writes it (PNG bytes, φ vectors)."""
    table = sample.score(model, samples, target, rows(), sigma=0.05, generator=generator(), train_phi=train_phi,
                         train_sigma=0.0, train_n_noise=1)
    to_arrow(table, as_uint8(samples.images))  # the table the rule writes
    return table


@pytest.mark.parametrize("kind", ["fixed", "adaptive"])
def test_samples_that_become_nan_are_flagged_and_the_others_go_on(model, train_phi, kind, caplog):
    # Target 1's φ* holds a NaN: the matching step of its samples diverges at once; target 0's go on.
    goals = torch.rand(T, 32, generator=generator(4)) * 0.05
    broken = goals.clone()
    broken[1, 0] = float("nan")
    options = draw_options(kind)
    clean = sample.draw(model, sample.Target(vectors=goals), rows(), start(), **options, generator=generator())
    with caplog.at_level(logging.WARNING, logger="semcore.sample"):
        result = sample.draw(model, sample.Target(vectors=broken), rows(), start(), **options, generator=generator())
    lost = rows() == 1
    assert result.failed_step.tolist() == [0] * S + [1] * S and not result.reached[lost].any()
    assert result.steps[lost].eq(0).all() and np.isnan(result.sigma[lost.numpy()]).all()
    assert torch.equal(result.images[lost], start().expand(S, 3, 16, 16))  # no finite step: the start image
    assert torch.isfinite(result.images).all() and result.steps[~lost].ge(1).all()
    if kind == "fixed":  # rows are independent, and the schedule draws the same noise: target 0's are unchanged
        assert torch.allclose(result.images[~lost], clean.images[~lost], atol=1e-6)
    assert (f"{S} of {T * S} samples became NaN/inf and stopped with their last finite image: "
            f"row {S} (target 1) at step 1, σ 0.5; row {S + 1}") in caplog.text
    table = scored(model, result, sample.Target(vectors=broken), train_phi)
    lost = lost.numpy()
    assert table.failed.tolist() == lost.tolist() and table.failure[lost].eq("NaN/inf at step 1, σ 0.5").all()
    assert table.failure[~lost].eq("").all() and table.final_sigma[lost].isna().all()
    assert table.schedule_sigma[lost].map(len).eq(0).all()


def test_a_sample_failing_later_keeps_its_last_finite_image(model, images, train_phi, caplog):
    # The denoiser's output for row 0 is NaN at step 4: the row stops with its image of step 3.
    options = dict(sigma_0=0.5, sigma_final=0.01, h0=0.1, beta=0.5, h_schedule=False)
    clean = sample.ascent(model, rows(), start(), **options, max_steps=3, generator=generator())
    with caplog.at_level(logging.WARNING, logger="semcore.sample"):
        result = sample.ascent(NaNAtCall(model, 4), rows(), start(), **options, max_steps=6, generator=generator())
    assert result.failed_step.tolist() == [4] + [0] * (T * S - 1) and result.steps[0] == 3 and not result.reached[0]
    assert torch.equal(result.images[0], clean.images[0])
    assert np.array_equal(result.sigma[0, :3], clean.sigma[0]) and np.isnan(result.sigma[0, 3:]).all()
    designed = (1 - 0.5 * 0.1) * clean.sigma[0, -1]  # the σ step 4 was designed for
    assert result.failed_sigma[0].item() == pytest.approx(designed, rel=1e-6)
    assert f"1 of {T * S} samples became NaN/inf" in caplog.text
    assert f"row 0 (target 0) at step 4, σ {designed:.3g}" in caplog.text
    table = scored(model, result, sample.Target(images=images, n_noise=N_NOISE), train_phi)
    assert table.failure.tolist() == [f"NaN/inf at step 4, σ {designed:.3g}"] + [""] * (T * S - 1)
    assert table.final_sigma[0] == clean.sigma[0, -1] and np.isfinite(table.phi_error).all()


def test_scores_find_a_copy_and_measure_diversity(model, images, train_phi):
    # Samples that are exact copies of the targets have φ distance 0 to their nearest training image and
    # pixel distance 0 to their conditioner.
    copies = images[rows()].clone()
    copies[S - 1] = 1 - copies[S - 1]  # one sample of target 0 differs
    result = sample.Samples(images=copies, steps=torch.ones(T * S, dtype=torch.long),
                            matching_steps=torch.zeros(T * S, dtype=torch.long), sigma=np.full((T * S, 1), 0.05),
                            phi_error=np.zeros((T * S, 1)), reached=torch.ones(T * S, dtype=torch.bool),
                            failed_step=torch.zeros(T * S, dtype=torch.long), failed_sigma=torch.full((T * S,), np.nan))
    table = sample.score(model, result, sample.Target(images=images, n_noise=N_NOISE), rows(), sigma=0.05,
                         generator=generator(), train_phi=train_phi, train_sigma=0.0, train_n_noise=1)
    assert table.sample_id.tolist() == [0, 1, 2] * T
    exact = table.drop(index=S - 1)
    assert exact.nn_key.tolist() == ["a"] * (S - 1) + ["b"] * S and np.allclose(exact.nn_phi_distance, 0, atol=1e-5)
    assert np.allclose(exact.pixel_distance, 0) and table.pixel_distance[S - 1] > 0.1
    assert np.allclose(table.diversity[S:], 0)  # target 1: three identical samples
    d = sample.pairwise_rmse(copies[:S])
    assert np.isclose(table.diversity[0], (d[0, 1] + d[0, 2]) / 2)
    assert (table.phi_error < 0.5).all()
    assert not table.failed.any() and table.failure.eq("").all() and table.final_sigma.eq(0.05).all()


def test_a_job_samples_fixed_targets_and_scores_them_against_the_nearest_phi_sigma(model, train_phi, caplog):
    # Centroid-like targets (fixed φ vectors): the sampler and the scores of a workflow job, as sample.draw and
    # sample.score give them called in turn; the nearest training image searched at the φ files' σ closest
    # to the scoring σ (0.05: 0.0 of [0.5, 0.0]).
    goals, options = torch.rand(T, 32, generator=generator(5)) * 0.05, draw_options("fixed")
    with caplog.at_level(logging.INFO, logger="semcore.sample"):
        table, samples = sample.sample_and_score(
            model, sample.Target(vectors=goals, n_noise=N_NOISE), S, start(), generator=generator(), score_sigma=0.05,
            train_phi=train_phi, phi_sigmas=[0.5, 0.0], phi_n_noise=1, **options)
    assert f"{T * S} samples of {T} targets in" in caplog.text
    target, again = sample.Target(vectors=goals, n_noise=N_NOISE), generator()
    drawn = sample.draw(model, target, rows(), start(), **options, generator=again)
    expected = sample.score(model, drawn, target, rows(), sigma=0.05, generator=again, train_phi=train_phi,
                            train_sigma=0.0, train_n_noise=1)
    assert torch.equal(samples.images, drawn.images) and table.target.tolist() == rows().tolist()
    assert np.allclose(table.phi_error, expected.phi_error) and table.nn_key.tolist() == expected.nn_key.tolist()
    assert table.nn_sigma.eq(0.0).all() and table.pixel_distance.isna().all()  # no conditioning image


def test_the_workflow_samples_scores_and_draws_grids(finished_run):
    results = finished_run / "results" / "tiny"
    table = pd.read_parquet(results / "samples" / "samples.parquet")
    n = TINY_CONFIG["sample"]["targets"] * TINY_CONFIG["sample"]["samples_per_target"]
    assert table.groupby("method").size().to_dict() == {"self-guided": n, "unconditional": n}
    assert table.target.nunique() == 3 and table.key.str.startswith("synthetic_").all()
    assert np.isfinite(table.phi_error).all() and (table.phi_error > 0).all() and not table.failed.any()
    guided = table[table.method == "self-guided"]
    assert guided.schedule_sigma.map(len).eq(3).all() and guided.steps.eq(3).all() and guided.reached_sigma_final.all()
    unconditional = table[table.method == "unconditional"]  # the tiny config's ascent: σ 0.5 → 0.1, at most 20 steps
    assert unconditional.reached_sigma_final.eq(unconditional.final_sigma < 0.1).all()
    assert table.nn_key.str.startswith("synthetic_").all() and table.nn_sigma.eq(0.1).all()
    assert decode_png(table.png.iloc[0]).shape == (16, 16, 3)
    assert table.phi.map(len).eq(32).all()
    grids = sorted(p.name for p in (results / "figures" / "samples").glob("*.png"))
    assert grids == ["target-000.png", "target-001.png", "target-002.png"]
    assert (results / "figures" / "sample_phi_error.png").stat().st_size > 10_000


def test_the_workflow_samples_the_largest_clusters_toward_their_centroids(finished_run):
    results = finished_run / "results" / "tiny"
    table = pd.read_parquet(results / "samples" / "clusters.parquet")
    k = max(TINY_CONFIG["cluster"]["ks"])  # sample.clusters.k null: the largest
    clusters = pd.read_parquet(results / "clusters" / "phi-s0.1" / f"k{k}" / "centroids.parquet").set_index("cluster")
    count, per_cluster = min(4, k), TINY_CONFIG["sample"]["samples_per_target"]  # sample.clusters' defaults
    largest = clusters["size"].sort_values(ascending=False, kind="stable").index[:count]
    assert table.groupby("cluster").size().to_dict() == {c: per_cluster for c in largest}
    assert table.cluster_size.tolist() == clusters["size"][table.cluster].tolist()
    assert table.features.eq("phi-s0.1").all() and table.k.eq(k).all() and table.score_sigma.eq(0.1).all()
    assert np.isfinite(table.phi_error).all() and not table.failed.any()
    # Whether a sample lands nearer its own centroid needs centroids farther apart than φ's noise: the
    # 30-step tiny model's are within 1e-4 of each other (the demo's: 16 of 16 samples nearest their own;
    # test_centroid_guided_samples_land_nearest_their_own_centroid checks it where centroids differ).
    phi = np.stack(table.phi)
    nearest = np.linalg.norm(phi[:, None] - np.stack(clusters.centroid)[None], axis=2).argmin(axis=1)
    assert table.nearest_cluster.tolist() == clusters.index[nearest].tolist()
    assert (results / "figures" / "sample_clusters.png").stat().st_size > 10_000


def test_changing_a_sampler_parameter_reruns_only_sampling(finished_run, tiny_config):
    # Jobs planned beyond those of the unchanged config (none, unless the code changed since the run).
    baseline = planned_jobs(finished_run)

    def planned_by_the_change():
        return {rule: n - baseline.get(rule, 0) for rule, n in planned_jobs(finished_run).items()
                if rule != "all" and n != baseline.get(rule, 0)}

    try:
        tiny_config["sample"]["matching"]["lr"] = 0.02
        write_config(finished_run, tiny_config)
        # the samples' table and what reads it (the explorer shows the targets' samples); the run's config.yaml,
        # rewritten at any change
        after = {"sample_summary": 1, "gist_scores": 1, "findings": 1, "explorer_data": 1, "explorer": 1,
                 "run_config": 1}
        assert planned_by_the_change() == {"sample": 2, "sample_clusters": 1, **after}
        tiny_config["sample"]["ascent"]["beta"] = 0.4
        write_config(finished_run, tiny_config)
        assert planned_by_the_change() == {"sample": 2, "sample_unconditional": 2, "sample_clusters": 1, **after}
        tiny_config["sample"]["matching"] = TINY_CONFIG["sample"]["matching"]
        write_config(finished_run, tiny_config)  # the fixed schedule does not use the ascent's settings
        assert planned_by_the_change() == {"sample_unconditional": 2, **after}
        tiny_config["sample"] = TINY_CONFIG["sample"] | {"clusters": {"members": 3}}
        write_config(finished_run, tiny_config)  # the clusters' samples alone read sample.clusters
        assert planned_by_the_change() == {"sample_clusters": 1, "run_config": 1}
        tiny_config["sample"]["clusters"] = {"count": 0}
        write_config(finished_run, tiny_config)  # none: the rule leaves the run
        assert planned_by_the_change() == {"run_config": 1}
    finally:
        write_config(finished_run, TINY_CONFIG)
