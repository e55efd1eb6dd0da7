"""The union of subspaces on held-out images (semcore.subspaces): real structure is found, none is found
where there is none, and the degenerate cases give empty or NaN tables, never an error."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_stats import two_groups_with_zeros

from semcore import figures, findings, stats, subspaces
from semcore.subspaces import GROUPS, RANDOM

REPO = Path(__file__).resolve().parents[1]


def ratios(heldout: pd.DataFrame) -> dict[str, float]:
    """mean(own residual) / mean(other residual) per kind: what semcore.findings reads."""
    means = heldout.groupby("kind")[["own_residual", "other_residual"]].mean()
    return (means.own_residual / means.other_residual).to_dict()


def disjoint_subspaces(rng: np.random.Generator, sizes=(150, 200, 250, 300), noise=0.05):
    """Groups of images, each with its own selective channel and a 2-D subspace of 3 non-selective channels
    of its own, plus a channel all images share and a little noise ≥ 0 everywhere. Returns (φ float32,
    selective mask)."""
    channels = len(sizes) + 3 * len(sizes) + 1
    phi = np.zeros((sum(sizes), channels))
    for g, rows in enumerate(np.split(np.arange(sum(sizes)), np.cumsum(sizes)[:-1])):
        phi[rows, g] = rng.uniform(1, 2, len(rows))
        own = len(sizes) + 3 * g
        phi[rows, own:own + 3] = np.abs(rng.normal(size=(len(rows), 2))) @ rng.uniform(0, 1, (2, 3))
        phi[rows, -1] = rng.uniform(1, 2, len(rows))
    phi += noise * np.abs(rng.normal(size=phi.shape))
    return phi.astype(np.float32), np.arange(channels) < len(sizes)


def test_groups_in_their_own_subspaces_fit_their_held_out_images_and_random_groups_do_not():
    real, random = [], []
    for seed in range(5):
        phi, selective = disjoint_subspaces(np.random.default_rng(seed))
        groups, pairs, heldout = subspaces.union_of_subspaces(phi, selective, 0.3, min_size=10, energy=0.95,
                                                              seed=seed)
        assert list(groups.columns) == subspaces.GROUP_COLUMNS and list(pairs.columns) == subspaces.PAIR_COLUMNS
        assert list(heldout.columns) == subspaces.HELDOUT_COLUMNS
        assert sorted(groups[groups.kind == GROUPS].channels) == ["0", "1", "2", "3"]
        # Halves: 75 of 150 … 150 of 300 fit, the rest held out.
        assert sorted(groups.fit_size[groups.kind == GROUPS]) == [75, 100, 125, 150]
        assert groups.groupby("kind").fit_size.sum().eq(450).all() and heldout.kind.value_counts().eq(450).all()
        assert groups[groups.kind == GROUPS].fit_dimension.le(3).all()
        assert heldout.own_residual.between(0, 1).all() and heldout.other_residual.between(0, 1.5).all()
        ratio = ratios(heldout)
        real.append(ratio[GROUPS])
        random.append(ratio[RANDOM])
    assert max(real) < 0.1  # own subspace ≪ the others'
    assert 0.95 < np.mean(random) < 1.05 and all(0.9 < r < 1.1 for r in random)  # ≈ 1: no structure


def test_groups_defined_by_active_channels_in_one_common_subspace_give_a_ratio_of_one():
    """Isotropic φ ≥ 0: the groups differ only in which selective channels are active, by definition; the
    rest of φ is the same for all of them. Measured on every channel, the selective ones included, the
    held-out images would still be nearer their own group's subspace (a ratio of ~0.4): that is the
    definition of the groups, not a union of subspaces."""
    real, random, every_channel = [], [], []
    selective = np.arange(16) < 4
    for seed in range(5):
        rng = np.random.default_rng(seed)
        phi = np.abs(rng.normal(size=(3000, 16))).astype(np.float32)
        groups, _, heldout = subspaces.union_of_subspaces(phi, selective, 0.3, min_size=10, energy=0.95, seed=seed)
        assert (groups.kind == GROUPS).sum() >= 12  # of the 15 patterns of 4 channels with one active
        ratio = ratios(heldout)
        real.append(ratio[GROUPS])
        random.append(ratio[RANDOM])
        members = [m for _, m in subspaces.group_by_active_selective(phi, selective, 0.3, 10)]
        table, _, _ = subspaces.heldout_residuals(phi, members, 0.95, np.random.default_rng(seed))  # every channel
        every_channel.append(table.own_residual.mean() / table.other_residual.mean())
    assert all(0.9 < r < 1.1 for r in real + random)
    assert 0.97 < np.mean(real) < 1.03 and 0.97 < np.mean(random) < 1.03
    assert max(every_channel) < 0.5


def test_fewer_than_two_groups_give_empty_tables_with_their_columns():
    rng = np.random.default_rng(0)
    phi, selective = disjoint_subspaces(rng, sizes=(50, 50))
    cases = [(phi, np.zeros(len(selective), bool)),  # no selective channel: nothing to group by
             (phi, np.arange(len(selective)) == 0),  # one selective channel: one group
             (np.zeros((40, 6), np.float32), np.ones(6, bool))]  # a φ of zeros: no active channel
    for values, mask in cases:
        tables = subspaces.union_of_subspaces(values, mask, 0.3, min_size=10, energy=0.95)
        for table, columns in zip(tables, (subspaces.GROUP_COLUMNS, subspaces.PAIR_COLUMNS, subspaces.HELDOUT_COLUMNS)):
            assert table.empty and list(table.columns) == columns
        assert findings.union_of_subspaces(tables[2])["verdict"] == "undecided"
    # Groups too small count as none.
    assert all(t.empty for t in subspaces.union_of_subspaces(phi, selective, 0.3, min_size=51, energy=0.95))


def test_the_held_out_split_is_seeded_and_keeps_the_keys():
    phi, selective = disjoint_subspaces(np.random.default_rng(0))
    keys = np.array([f"img{i:04d}" for i in range(len(phi))])
    first = subspaces.union_of_subspaces(phi, selective, 0.3, 10, 0.95, seed=3, keys=keys)
    again = subspaces.union_of_subspaces(phi, selective, 0.3, 10, 0.95, seed=3, keys=keys)
    other = subspaces.union_of_subspaces(phi, selective, 0.3, 10, 0.95, seed=4, keys=keys)
    for a, b in zip(first, again):
        pd.testing.assert_frame_equal(a, b)
    heldout = first[2]
    assert not heldout.key.equals(other[2].key)
    # Held-out images are never in their group's fit part, and each appears once per kind.
    assert heldout.groupby("kind").key.apply(lambda k: k.is_unique).all()
    grouped = subspaces.group_by_active_selective(phi, selective, 0.3, 10)
    members = {g: set(keys[m]) for g, (_, m) in enumerate(grouped)}
    real = heldout[heldout.kind == GROUPS]
    assert all(key in members[g] for g, key in zip(real.group, real.key))


def test_residuals_are_batched_projections_and_compare_every_subspace_with_itself(monkeypatch):
    """own_and_other_residuals against a projection per image, in chunks of 7 rows; a zero-dimensional
    subspace leaves a residual of 1, a zero row none (NaN). The other groups' residuals are weighted
    h_g / (H − h_g): a plain mean for groups of equal sizes; in general the means of own and other are
    each subspace's mean residual on its own group's rows and on the others', weighted h_g."""
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(40, 6)).astype(np.float32)
    phi[5] = 0
    mask = np.arange(6) != 2  # channel 2 not measured
    bases = subspaces.fit_subspaces(phi, [np.arange(10, 20), np.arange(20, 30), np.arange(30, 33)], 0.8, mask)
    bases.append(np.zeros((6, 0)))
    assert all(np.allclose(b[2], 0) for b in bases) and bases[2].shape[1] <= 3
    # Many rows go through their Gram matrix, a few through an SVD: the same subspaces.
    monkeypatch.setattr(subspaces, "CHUNK_ELEMENTS", 1)
    through_gram = subspaces.fit_subspaces(phi, [np.arange(10, 20), np.arange(20, 30), np.arange(30, 33)], 0.8, mask)
    for a, b in zip(bases, through_gram):
        assert a.shape == b.shape and np.allclose(a @ a.T, b @ b.T)
    monkeypatch.setattr(subspaces, "CHUNK_ELEMENTS", 7 * 6)

    def naive(rows, group):
        residuals = np.array([[np.sum((v - b @ (b.T @ v)) ** 2) / np.sum(v**2) if v.any() else np.nan
                               for b in bases] for v in phi[rows].astype(float) * mask])
        return residuals, np.bincount(group, minlength=len(bases))

    rows, group = np.arange(4, 12), np.arange(8) % 4  # 2 rows a group: the plain mean of the 3 others
    own, other = subspaces.own_and_other_residuals(phi, rows, group, bases, mask)
    r, _ = naive(rows, group)
    assert np.isnan(r[1]).all() and np.isnan(own[1]) and np.isnan(other[1])  # row 5 is zero
    assert (np.delete(r, 1, axis=0)[:, 3] == 1).all()  # the zero-dimensional subspace
    keep = ~np.isnan(own)
    assert own[keep] == pytest.approx(r[keep, group[keep]])
    assert other[keep] == pytest.approx(((r.sum(axis=1) - r[np.arange(8), group]) / 3)[keep])

    rows, group = np.r_[0:5, 6:40], np.repeat([0, 1, 2, 3], [3, 6, 10, 20])  # unequal sizes, no zero row
    own, other = subspaces.own_and_other_residuals(phi, rows, group, bases, mask)
    r, held = naive(rows, group)
    mine = group[:, None] == np.arange(4)
    assert own == pytest.approx(r[np.arange(len(rows)), group])
    assert own.sum() == pytest.approx(sum(held[g] * r[mine[:, g], g].mean() for g in range(4)))
    assert other.sum() == pytest.approx(sum(held[g] * r[~mine[:, g], g].mean() for g in range(4)))


def test_union_of_subspaces_descriptive_statistics():
    """Two groups, each with a shared channel and its own selective one: 2-D subspaces at large angles."""
    rng = np.random.default_rng(0)
    n, channels = 100, 5
    phi = np.zeros((2 * n, channels))
    phi[:, 0] = rng.uniform(1, 2, 2 * n)  # the common, non-selective channel
    phi[:n, 1] = rng.uniform(1, 2, n)  # selective for group A
    phi[n:, 2] = rng.uniform(1, 2, n)  # selective for group B
    selective = np.array([False, True, True, False, False])
    groups = subspaces.group_by_active_selective(phi, selective, fraction=0.1, min_size=10)
    assert sorted(g[0] for g in groups) == [(1,), (2,)]
    members = [g[1] for g in groups]
    per_group, pairs = subspaces.subspace_statistics(phi, members, energy=0.99)
    assert per_group.dimension.tolist() == [2, 2]
    shuffled, shuffled_pairs = subspaces.subspace_statistics(phi, subspaces.random_groups(members, rng), 0.99)
    assert (shuffled.dimension > 2).all()
    assert pairs.mean_angle.iloc[0] > shuffled_pairs.mean_angle.iloc[0] + 20
    # Random groups: the same images, disjoint, of the same sizes.
    rand = subspaces.random_groups(members, np.random.default_rng(1))
    assert [len(m) for m in rand] == [len(m) for m in members]
    assert sorted(np.concatenate(rand)) == sorted(np.concatenate(members))


def test_zero_images_join_no_group_and_zero_rows_have_no_dimension_nor_angle():
    phi = two_groups_with_zeros(np.random.default_rng(0))
    selective = np.array([False, True, True, False, False])
    grouped = subspaces.group_by_active_selective(phi, selective, 0.1, min_size=10)
    assert len(grouped) == 2 and not any(set(members) & set(range(200, 220)) for _, members in grouped)
    groups, pairs, heldout = subspaces.union_of_subspaces(phi, selective, 0.1, min_size=10, energy=0.99)
    assert len(groups) == 4 and not groups.channels.str.contains("4").any()
    assert not set(heldout.key) & set(range(200, 220))  # nor in a random group: drawn among the grouped images
    # Measured on channels 0, 3, 4 the two groups are alike: no union of subspaces there.
    assert 0.7 < ratios(heldout)[GROUPS] < 1.3
    # Rows that are all zero span {0}: dimension 0, no angle to them.
    zero_rows = [np.arange(200, 210), np.arange(210, 220), np.arange(0, 10)]
    per_group, pairs = subspaces.subspace_statistics(phi, zero_rows, energy=0.99)
    assert per_group.dimension.tolist()[:2] == [0, 0] and per_group.pr_dimension.tolist()[:2] == [0, 0]
    assert pairs.min_angle.isna().tolist() == [True, True, True] and pairs.mean_angle.isna().all()
    # A grouped image whose measured channels are zero has no residual (NaN), and is kept.
    phi[:100, [0, 3]] = 0
    _, _, heldout = subspaces.union_of_subspaces(phi, selective, 0.1, min_size=10, energy=0.99)
    first = heldout.key < 100
    assert heldout[first][["own_residual", "other_residual"]].isna().all().all()
    assert heldout[~first & (heldout.kind == GROUPS)].own_residual.notna().all()


def test_the_figure_shows_the_held_out_test_and_says_when_there_is_none(tmp_path):
    phi, selective = disjoint_subspaces(np.random.default_rng(0))
    for name, mask in (("groups", selective), ("none", np.zeros(len(selective), bool))):
        groups, pairs, heldout = subspaces.union_of_subspaces(phi, mask, 0.3, 10, 0.95)
        figures.subspace_comparison(groups, pairs, heldout, str(tmp_path / f"{name}.png"))
        width, height = Image.open(tmp_path / f"{name}.png").size
        assert width == round(figures.COLUMN * 300) and height > (250 if name == "none" else 1000)


def test_the_rule_writes_the_held_out_table_and_passes_its_settings_through_params():
    smk = (REPO / "rules" / "stats.smk").read_text()
    body = re.search(r"^rule subspaces:\n(.*?)(?=^\S|\Z)", smk, re.M | re.S)[1]
    outputs = body.split("output:")[1].split("log:")[0]
    assert 'heldout=stats_path("subspace_heldout")' in outputs
    params = dict(re.findall(r"^\s+(\w+)=(config\[.*?\]),?$", body.split("params:")[1].split("script:")[0], re.M))
    assert set(params) == {"sigma", "active_fraction", "min_group_size", "energy", "seed"}
    script = (REPO / "workflow_scripts" / "subspaces.py").read_text()
    assert all(f"p.{name}" in script for name in params) and "snakemake.output.heldout" in script


def test_stats_no_longer_holds_the_union_of_subspaces():
    for name in ("group_by_active_selective", "subspace_statistics", "shuffled_groups", "union_of_subspaces"):
        assert not hasattr(stats, name)
