import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from semcore import findings, stats


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


# Zeros: dead channels, images whose φ is zero, a whole φ of zeros, through the functions the workflow's
# stats scripts call (semcore.stats' docstring lists the values).

def two_groups_with_zeros(rng: np.random.Generator) -> np.ndarray:
    """The two groups above, channel 4 dead, and 20 images whose φ is zero (float32, as φ files are)."""
    n = 100
    phi = np.zeros((2 * n + 20, 5), np.float32)
    phi[:2 * n, 0] = rng.uniform(1, 2, 2 * n)
    phi[:n, 1] = rng.uniform(1, 2, n)
    phi[n:2 * n, 2] = rng.uniform(1, 2, n)
    phi[:2 * n, 3] = rng.uniform(0, 0.1, 2 * n)
    return phi


def block_means_table(means: dict[tuple[str, str, float], np.ndarray]) -> pa.Table:
    """A block-means table as phi.write_block_means writes it, from {(key, block, σ): means}."""
    keys, blocks, sigmas = zip(*means)
    return pa.table({"key": keys, "sigma": pa.array(sigmas, pa.float64()), "block": blocks,
                     "means": [m.tolist() for m in means.values()]})


def test_zero_means_have_undefined_pr_and_cosine_counted_in_the_findings():
    rng = np.random.default_rng(0)
    means = {(f"x{i}", block, sigma): rng.uniform(0, 1, 4)
             for i in range(4) for block in ("E1", "M") for sigma in (0.0, 0.5)}
    means["x0", "M", 0.0] = np.zeros(4)  # an image whose middle-block means are zero at σ1
    means["x1", "E1", 0.5] = np.zeros(4)
    table = block_means_table(means)
    block_pr = stats.block_pr_table(table, 0.0)
    undefined = block_pr[block_pr.pr.isna()]
    assert list(zip(undefined.key, undefined.block)) == [("x0", "M")] and len(block_pr) == 8
    stability = stats.stability_table(table, 0.0)
    undefined = stability[stability.cosine.isna()]
    assert sorted(zip(undefined.key, undefined.block, undefined.sigma)) == [
        ("x0", "M", 0.0), ("x0", "M", 0.5), ("x1", "E1", 0.5)]  # against σ1 = 0, and σ2 = 0.5
    sparsity = findings.sparsity(block_pr)
    assert sparsity["value"] == pytest.approx(block_pr[block_pr.block == "M"].pr.dropna().mean())
    assert sparsity["measure"] == "mean PR of ā, middle block (M), 1 of 4 undefined (zero ā) left out"
    assert sparsity["baseline"] == "lowest other block (E1)"
    stable = findings.stability(stability)
    assert stable["measure"].endswith("M, 2 of 8 undefined (zero ā) left out")
    assert stable["baseline"] == "most stable other block (E1, 1 of 8 undefined (zero ā) left out)"


def test_dead_channels_and_zero_images_are_not_selective_and_join_no_group():
    phi = two_groups_with_zeros(np.random.default_rng(0))
    table, threshold, bimodal = stats.channel_table(phi, active_fraction=0.1)
    assert table.dead.tolist() == [False, False, False, False, True]
    dead = table.iloc[4]
    assert np.isnan(dead.pr) and dead["mean"] == 0 and dead.active_fraction == 0 and not dead.selective
    assert table.pr[:4].notna().all() and np.isfinite(threshold)
    groups = stats.group_by_active_selective(phi, table.selective.to_numpy(), 0.1, min_size=10)
    assert not any(set(members) & set(range(200, 220)) for _, members in groups)  # the zero images
    per_group, _ = stats.union_of_subspaces(phi, table.selective.to_numpy(), 0.1, min_size=10, energy=0.99)
    assert len(per_group) == 2 * len(groups) and not per_group.channels.str.contains("4").any()
    # Random groups drawn among the zero images span {0}: dimension 0, no angle to them.
    zero_rows = [np.arange(200, 210), np.arange(210, 220), np.arange(0, 10)]
    per_group, pairs = stats.subspace_statistics(phi, zero_rows, energy=0.99)
    assert per_group.dimension.tolist()[:2] == [0, 0] and per_group.pr_dimension.tolist()[:2] == [0, 0]
    assert pairs.min_angle.isna().tolist() == [True, True, True] and pairs.mean_angle.isna().all()
    factors = pd.DataFrame({"group": np.repeat(["a", "b", "none"], [100, 100, 20])})
    mi = stats.factor_mutual_information(phi, factors)
    assert mi.mutual_information[4] == 0 and mi.mutual_information[1] > 0.3


def test_a_phi_of_zeros_gives_defined_empty_statistics():
    block_means = block_means_table({(f"x{i}", block, sigma): np.zeros(4)
                                     for i in range(3) for block in ("E1", "M") for sigma in (0.0, 0.5)})
    block_pr, stability = stats.block_pr_table(block_means, 0.0), stats.stability_table(block_means, 0.0)
    assert block_pr.pr.isna().all() and len(block_pr) == 6 and stability.cosine.isna().all()
    for row, rows in (findings.sparsity(block_pr), 3), (findings.stability(stability), 6):  # M's rows
        assert np.isnan(row["value"]) and np.isnan(row["baseline_value"]) and not row["holds"]
        assert row["measure"].endswith(f", {rows} of {rows} undefined (zero ā) left out")

    phi = np.zeros((50, 6), np.float32)
    assert np.isnan(stats.participation_ratio(phi, axis=1)).all()
    assert stats.effective_dimension(phi, 0.99) == 0 and stats.participation_dimension(phi) == 0
    table, threshold, bimodal = stats.channel_table(phi, active_fraction=0.1)
    assert table.dead.all() and table.pr.isna().all() and table.active_fraction.eq(0).all()
    assert not table.selective.any()
    assert np.isnan(threshold) and not bimodal
    groups, pairs = stats.union_of_subspaces(phi, table.selective.to_numpy(), 0.1, min_size=2, energy=0.99)
    assert groups.empty and pairs.empty
    mi = stats.factor_mutual_information(phi, pd.DataFrame({"size": np.linspace(0, 1, 50)}))
    assert mi.mutual_information.eq(0).all()
    # The summary the selectivity rule writes, and the findings read from it and from the groups.
    summary = dict(sigma=0.1, threshold=threshold, bimodal=bimodal, channels=len(table),
                   selective=int(table.selective.sum()), dead=int(table.pr.isna().sum()))
    selectivity = findings.selectivity(summary)
    assert not selectivity["holds"] and selectivity["value"] == 0 and selectivity["baseline_value"] == 0  # live
    assert not findings.union_of_subspaces(groups)["holds"]


def test_the_selectivity_threshold_needs_two_distinct_live_prs():
    for pr in (np.array([np.nan, np.nan]), np.array([0.3, np.nan]), np.array([0.3, 0.3, np.nan])):
        threshold, bimodal = stats.selectivity_threshold(pr)
        assert np.isnan(threshold) and not bimodal
