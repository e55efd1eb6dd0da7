import numpy as np
import pandas as pd
import pytest

from semcore import stats


def test_participation_ratio_known_values():
    n = 8
    assert stats.participation_ratio(np.eye(n)[3]) == pytest.approx(1 / n)
    assert stats.participation_ratio(np.full(n, 2.5)) == pytest.approx(1.0)
    half = np.r_[np.ones(4), np.zeros(4)]
    assert stats.participation_ratio(half) == pytest.approx(0.5)
    batch = np.stack([np.eye(n)[0], np.ones(n)])
    assert stats.participation_ratio(batch).tolist() == pytest.approx([1 / n, 1.0])
    assert stats.participation_ratio(batch, axis=0)[0] == pytest.approx(1.0)  # column 0 is [1, 1]
    assert np.isnan(stats.participation_ratio(np.zeros(n)))


def test_cosine_similarity():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = np.array([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    assert stats.cosine_similarity(a, b).tolist() == pytest.approx([0.0, 1.0, -1.0])


def test_selectivity_threshold_splits_a_bimodal_distribution():
    rng = np.random.default_rng(0)
    pr = np.r_[rng.normal(0.15, 0.03, 40), rng.normal(0.8, 0.05, 60)]
    threshold, bimodal = stats.selectivity_threshold(pr)
    assert bimodal and 0.3 < threshold < 0.65
    assert (pr[:40] < threshold).all() and (pr[40:] > threshold).all()
    _, bimodal = stats.selectivity_threshold(rng.normal(0.5, 0.1, 100))
    assert not bimodal


def test_effective_dimension_and_principal_angles():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(200, 2)) @ np.eye(6)[:2]  # in the span of e0, e1
    other = rng.normal(size=(200, 2)) @ np.eye(6)[2:4]  # in the span of e2, e3
    assert stats.effective_dimension(plane, 0.99) == 2
    assert stats.effective_dimension(rng.normal(size=(500, 6)), 0.99) == 6
    assert stats.participation_dimension(np.outer(rng.uniform(1, 2, 50), np.ones(6))) == pytest.approx(1.0)
    assert stats.participation_dimension(np.eye(6)[[0, 1, 2] * 10]) == pytest.approx(3.0)
    a, b = stats.principal_subspace(plane, 2), stats.principal_subspace(other, 2)
    assert stats.principal_angles(a, b) == pytest.approx([90.0, 90.0])
    assert stats.principal_angles(a, a) == pytest.approx([0.0, 0.0], abs=1e-5)


def test_union_of_subspaces_is_recovered_and_beats_its_shuffled_baseline():
    """Two groups, each with a shared channel and its own selective one: 2-D subspaces at large angles."""
    rng = np.random.default_rng(0)
    n, channels = 100, 5
    phi = np.zeros((2 * n, channels))
    phi[:, 0] = rng.uniform(1, 2, 2 * n)  # the common, non-selective channel
    phi[:n, 1] = rng.uniform(1, 2, n)  # selective for group A
    phi[n:, 2] = rng.uniform(1, 2, n)  # selective for group B
    selective = np.array([False, True, True, False, False])
    groups = stats.group_by_active_selective(phi, selective, fraction=0.1, min_size=10)
    assert [g[0] for g in groups] == [(1,), (2,)] or [g[0] for g in groups] == [(2,), (1,)]
    members = [g[1] for g in groups]
    per_group, pairs = stats.subspace_statistics(phi, members, energy=0.99)
    assert per_group.dimension.tolist() == [2, 2]
    shuffled, shuffled_pairs = stats.subspace_statistics(phi, stats.shuffled_groups(members, 2 * n, rng), 0.99)
    assert (shuffled.dimension > 2).all()
    assert pairs.mean_angle.iloc[0] > shuffled_pairs.mean_angle.iloc[0] + 20


def test_mutual_information_finds_the_channel_that_encodes_a_factor():
    rng = np.random.default_rng(0)
    shape = rng.choice(["disk", "ring"], 500)
    position = rng.uniform(0, 1, 500)
    phi = rng.normal(size=(500, 4))
    phi[:, 1] += 3 * (shape == "disk")
    phi[:, 3] = position + 0.01 * rng.normal(size=500)
    table = stats.factor_mutual_information(phi, pd.DataFrame({"shape": shape, "position": position}))
    best = table.loc[table.groupby("factor").mutual_information.idxmax()].set_index("factor").channel
    assert best["shape"] == 1 and best["position"] == 3
