"""k-means, nearest neighbours and semantic scores on data whose answer is known."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from semcore import cluster, scores
from semcore.plan.names import feature_set_names
from semcore.plan.names import parse_feature_set as parse


def test_well_separated_blobs_are_recovered_exactly():
    x, truth = make_blobs(600, 16, centers=5, cluster_std=0.3, random_state=1)
    result = cluster.kmeans(x, 5, n_init=3, seed=0)
    assert adjusted_rand_score(truth, result.labels) == 1
    assert result.centroids.shape == (5, 16) and result.labels.shape == (600,)
    recomputed = np.linalg.norm(x - result.centroids[result.labels], axis=1)
    np.testing.assert_allclose(result.distances, recomputed, rtol=1e-4, atol=1e-4)
    assert result.inertia == pytest.approx((recomputed ** 2).sum(), rel=1e-4)


def test_inertia_matches_scikit_learn_on_overlapping_data():
    x, _ = make_blobs(2000, 32, centers=12, cluster_std=3.0, random_state=0)
    ours = cluster.kmeans(x, 12, n_init=10, seed=0)
    theirs = KMeans(12, n_init=10, random_state=0).fit(x.astype(np.float32))
    assert ours.inertia <= theirs.inertia_ * 1.01


def test_same_seed_same_clusters_and_k_is_always_filled():
    x = np.random.default_rng(0).normal(size=(50, 3))
    first, again = cluster.kmeans(x, 7, seed=3), cluster.kmeans(x, 7, seed=3)
    assert np.array_equal(first.labels, again.labels)
    points = np.repeat(np.eye(4), 3, axis=0)  # 4 distinct points: k = 4 leaves no cluster empty
    assert set(cluster.kmeans(points, 4, seed=0).labels) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="k=20"):
        cluster.kmeans(x[:10], 20)


def test_chunked_distances_equal_one_shot(monkeypatch):
    x = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    whole = cluster.kmeans(x, 6, seed=0)
    monkeypatch.setattr(cluster, "DISTANCE_CHUNK", 60)  # 10 rows per chunk
    chunked = cluster.kmeans(x, 6, seed=0)
    assert np.array_equal(whole.labels, chunked.labels)


def test_nearest_neighbours_match_brute_force_and_never_return_the_query():
    x = np.random.default_rng(2).normal(size=(200, 5)).astype(np.float32)
    queries = np.array([0, 17, 99])
    indices, distances = cluster.nearest_neighbours(x[queries], x, 4, exclude_self=queries)
    brute = np.linalg.norm(x[queries, None] - x[None], axis=2)
    brute[np.arange(3), queries] = np.inf
    assert np.array_equal(indices, np.argsort(brute, axis=1)[:, :4])
    np.testing.assert_allclose(distances, np.sort(brute, axis=1)[:, :4], rtol=1e-4)


def test_the_chunked_search_ranks_rows_that_differ_by_a_millionth_of_their_norm():
    """φ of a barely trained network: all images alike to 1e-6 of φ's norm. Unshifted float32 ranked by noise."""
    rng = np.random.default_rng(3)
    x = (100 + 1e-4 * rng.normal(size=(300, 16))).astype(np.float32)
    queries = np.array([0, 5, 299])
    chunks = [(pd.DataFrame(index=range(100)), x[start:start + 100]) for start in range(0, 300, 100)]
    found = cluster.nearest_in_chunks(x[queries], chunks, 5, exclude=queries)
    brute = np.linalg.norm(x[queries, None].astype(np.float64) - x[None].astype(np.float64), axis=2)
    brute[np.arange(3), queries] = np.inf
    np.testing.assert_array_equal(found["row"].to_numpy().reshape(3, 5), np.argsort(brute, axis=1)[:, :5])


def test_normalized_rows_have_unit_norm_and_zero_stays_zero():
    phi = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(cluster.normalized(phi), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)


def test_a_permuted_labelling_scores_one_and_a_random_one_near_zero():
    truth = np.repeat(np.arange(4), 50)
    permuted = (truth + 1) % 4
    assert scores.cluster_scores(truth, permuted) == pytest.approx(dict(nmi=1, ami=1, ari=1, purity=1, accuracy=1))
    noise = np.random.default_rng(0).integers(0, 4, size=200)
    random = scores.cluster_scores(truth, noise)
    assert abs(random["ari"]) < 0.05 and abs(random["ami"]) < 0.05


def test_purity_and_matched_accuracy_on_a_known_contingency_table():
    truth = np.array([0, 0, 0, 1, 1, 2])
    clusters = np.array([0, 0, 1, 1, 1, 1])  # cluster 1 holds one 0, both 1s and the 2
    assert scores.purity(truth, clusters) == pytest.approx(4 / 6)
    assert scores.matched_accuracy(truth, clusters) == pytest.approx(4 / 6)
    assert scores.purity(truth, np.arange(6)) == 1 and scores.matched_accuracy(truth, np.arange(6)) == pytest.approx(3 / 6)


def test_targets_bin_numeric_factors_and_skip_constant_ones():
    labels = pd.Series([0, 1] * 10)
    factors = pd.DataFrame({"x": np.linspace(0, 1, 20), "kind": ["a", "b"] * 10, "same": ["s"] * 20})
    targets = scores.semantic_targets(labels, factors)
    assert set(targets) == {"label", "x", "kind"} and targets["x"].nunique() == scores.FACTOR_BINS
    assert "label" not in scores.semantic_targets(pd.Series([None] * 20, dtype=float), factors)
    table = scores.cluster_score_table(np.array([0, 1] * 10), targets)
    assert table.set_index(["target", "metric"]).value.loc[("label", "nmi")] == pytest.approx(1)


def test_linear_probe_separates_separable_classes():
    x, y = make_blobs(400, 10, centers=3, cluster_std=0.5, random_state=0)
    assert scores.probe_accuracy(x[:300], y[:300], x[300:], y[300:]) == 1


def test_feature_set_names_round_trip():
    names = feature_set_names([0.0, 0.1])
    assert names == ["phi-s0", "phi-s0.1", "untrained-s0", "untrained-s0.1", "pixels"]
    assert [parse(n) for n in names][1:] == [("phi", 0.1), ("untrained", 0.0), ("untrained", 0.1), ("pixels", None)]
    with pytest.raises(ValueError, match="unknown feature set"):
        parse("pixels-s0.1")


def test_restarts_on_a_sample_then_refined_on_all_points_find_the_blobs():
    x, truth = make_blobs(6000, 8, centers=6, cluster_std=0.5, random_state=3)
    result = cluster.kmeans(x, 6, n_init=3, points_per_centroid=50, seed=0)  # restarts on 300 points
    assert adjusted_rand_score(truth, result.labels) == 1
    full = cluster.kmeans(x, 6, n_init=3, points_per_centroid=None, seed=0)
    assert result.inertia == pytest.approx(full.inertia, rel=1e-4)


def test_cluster_sums_equal_index_add_and_the_sorted_sums_used_on_cuda():
    rng = np.random.default_rng(4)
    x = torch.as_tensor(rng.normal(size=(5000, 16)), dtype=torch.float32)
    labels = torch.as_tensor(rng.integers(0, 37, size=5000))
    exact = np.zeros((37, 16))
    np.add.at(exact, labels.numpy(), x.double().numpy())
    on_cpu = cluster.cluster_sums(x, labels, 37)
    assert torch.equal(on_cpu, torch.zeros(37, 16).index_add_(0, labels, x))  # the CPU path is unchanged
    as_on_cuda = torch.zeros(37, 16).index_put_((labels,), x, accumulate=True)  # the CUDA path's reduction
    np.testing.assert_allclose(as_on_cuda.numpy(), exact, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(on_cpu.numpy(), exact, rtol=1e-5, atol=1e-5)


def test_the_probe_on_wide_features_with_few_rows_is_the_probe_on_the_features_themselves():
    """Pixels wider than the probe's PCA cap, fewer train rows than columns: the projection must not change
    what the probe learns (the components past the rows' rank hold rounding alone)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    two = np.isin(digits.target, (3, 8))  # a balanced, not quite trivial two-class task
    rng = np.random.default_rng(0)
    images = np.kron(digits.images[two][:200], np.ones((3, 3)))  # 24×24 = 576 > PROBE_MAX_DIMS columns
    x = (images.reshape(len(images), -1) / 16 + rng.normal(0, 0.3, (len(images), 576))).astype(np.float32)
    assert x.shape[1] > scores.PROBE_MAX_DIMS
    y = digits.target[two][:200]
    meta = pd.DataFrame({"key": [f"k{i}" for i in range(200)], "split": ["train"] * 156 + ["test"] * 44,
                         "label": y})
    predictions = scores.probe_predictions(meta, x, pd.DataFrame(index=meta.key))
    projected = scores.probe_table(predictions).set_index("target").value["label"]
    raw = scores.probe_accuracy(x[:156], y[:156], x[156:], y[156:])
    assert raw > 0.85 and abs(projected - raw) <= 1 / 44  # at most one test image apart
    assert set(predictions.key) == set(meta.key[156:]) and predictions.correct.dtype == bool
