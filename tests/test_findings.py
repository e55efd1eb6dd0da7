"""Known answers: tables built so that each claim holds, is contradicted, or is undecided give those three
verdicts, for every claim; the intervals cover what they should."""
import numpy as np
import pandas as pd
import pytest

from semcore import findings

SETTINGS = findings.Bootstrap(resamples=500, confidence=0.95, seed=0)
RNG = np.random.default_rng(0)


def per_image(values: dict[str, np.ndarray], column: str) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"key": [f"k{i}" for i in range(len(v))], "block": block, column: v})
                      for block, v in values.items()], ignore_index=True)


def test_verdict_reads_the_interval_of_the_difference_in_the_claims_direction():
    assert findings.verdict(-0.3, -0.1, "lower") == "holds" and findings.verdict(0.1, 0.3, "lower") == "contradicted"
    assert findings.verdict(0.1, 0.3, "higher") == "holds" and findings.verdict(-0.3, -0.1, "higher") == "contradicted"
    assert findings.verdict(-0.1, 0.1, "higher") == "undecided" and findings.verdict(np.nan, np.nan, "lower") == "undecided"


@pytest.mark.parametrize("shift, expected", [(-0.1, "holds"), (0.1, "contradicted"), (0.0, "undecided")])
def test_sparsity(shift, expected):
    base = RNG.uniform(0.3, 0.6, 200)
    block_pr = per_image({"E1": base + 0.2, "M": base + shift + RNG.normal(0, 0.01, 200), "D1": base}, "pr")
    row = findings.sparsity(block_pr, SETTINGS)
    assert row["verdict"] == expected and row["baseline"] == "lowest other block (D1)" and row["n"] == 200
    assert row["value_low"] <= row["value"] <= row["value_high"]
    assert row["difference_low"] <= shift <= row["difference_high"] or abs(row["difference"] - shift) < 0.01


def test_sparsity_is_undecided_on_a_few_noisy_images_and_leaves_zero_vectors_out():
    block_pr = per_image({"M": np.array([0.2, 0.6, np.nan, 0.4]), "D1": np.array([0.5, 0.3, 0.4, 0.45])}, "pr")
    row = findings.sparsity(block_pr, SETTINGS)
    assert row["verdict"] == "undecided" and row["n"] == 3 and row["note"].startswith("1 of 4 images")
    assert findings.sparsity(per_image({"M": np.full(3, np.nan), "D1": np.ones(3)}, "pr"))["verdict"] == "undecided"


@pytest.mark.parametrize("shift, expected", [(0.02, "holds"), (-0.02, "contradicted"), (0.0, "undecided")])
def test_stability_leaves_sigma1_out_of_its_mean(shift, expected):
    rows = []
    for sigma in (0.1, 0.5, 0.9):  # σ1 = 0.5: cosine 1 by definition, not a measurement
        base = np.ones(100) if sigma == 0.5 else RNG.uniform(0.9, 0.96, 100)
        noise = 0 if sigma == 0.5 else RNG.normal(0, 0.002, 100)
        rows.append(per_image({"E1": base, "M": np.minimum(base + shift + noise, 1)}, "cosine").assign(sigma=sigma))
    table = pd.concat(rows, ignore_index=True)
    row = findings.stability(table, 0.5, SETTINGS)
    assert row["verdict"] == expected
    expected_mean = table[(table.block == "E1") & (table.sigma != 0.5)].cosine.mean()
    assert row["baseline_value"] == pytest.approx(expected_mean)


def heldout(own: float, other: float, groups: int = 4, n: int = 60) -> pd.DataFrame:
    frames = []
    for kind, (a, b) in (("active channels", (own, other)), ("random", (0.5, 0.5))):
        frames.append(pd.DataFrame({"kind": kind, "group": np.arange(n) % groups, "key": [f"k{i}" for i in range(n)],
                                    "own_residual": np.clip(a + RNG.normal(0, 0.05, n), 0, 1),
                                    "other_residual": np.clip(b + RNG.normal(0, 0.05, n), 0, 1)}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("own, expected", [(0.1, "holds"), (0.9, "contradicted"), (0.5, "undecided")])
def test_union_of_subspaces(own, expected):
    row = findings.union_of_subspaces(heldout(own, 0.5), SETTINGS)
    assert row["verdict"] == expected, row
    assert row["baseline_low"] <= 1 <= row["baseline_high"] + 0.05


def test_union_of_subspaces_without_two_groups_is_undecided_and_says_why():
    row = findings.union_of_subspaces(heldout(0.1, 0.5, groups=1), SETTINGS)
    assert row["verdict"] == "undecided" and "fewer than two groups" in row["note"]


def clusterings(n: int, phi_informative: bool, pixels_informative: bool) -> dict[str, pd.DataFrame]:
    label = np.arange(n) % 4
    noise = RNG.integers(0, 8, n)

    def clusters(informative):
        return np.where(RNG.random(n) < 0.8, label, noise) if informative else RNG.integers(0, 8, n)
    keys = [f"k{i}" for i in range(n)]
    return {kind: pd.DataFrame({"key": keys, "label": label, "cluster": clusters(informative)})
            for kind, informative in (("phi", phi_informative), ("pixels", pixels_informative),
                                      ("untrained", pixels_informative))}


@pytest.mark.parametrize("phi, pixels, expected", [(True, False, "holds"), (False, True, "contradicted"),
                                                   (False, False, "undecided")])
def test_semantic_clustering(phi, pixels, expected):
    """Both random: labels that carry nothing about the clusters give no verdict, whatever the bare means."""
    rows = findings.semantic_clustering(clusterings(400, phi, pixels), 0.1, 8,
                                        findings.Bootstrap(200, 0.95, 0))
    assert [r["verdict"] for r in rows] == [expected, expected]
    assert rows[0]["baseline"] == "pixels" and rows[1]["baseline"] == "the untrained network's φ"


@pytest.mark.parametrize("flip_to, expected", [(True, "holds"), (False, "contradicted"), (None, "undecided")])
def test_probe(flip_to, expected):
    """φ's probe is the baseline's but for 40 test images it gets right (wrong), or 40 it changes either way."""
    keys = [f"k{i}" for i in range(300)]
    base = RNG.random(300) < 0.7
    phi = base.copy()
    changed = RNG.choice(300, 40, replace=False)
    phi[changed] = flip_to if flip_to is not None else ~base[changed]
    if flip_to is None:  # as many gained as lost
        phi[changed] = np.arange(40) % 2 == 0
        base[changed] = ~phi[changed]

    def predictions(correct):
        return pd.DataFrame({"target": "label", "key": keys, "correct": correct})
    rows = findings.probe({"phi": predictions(phi), "pixels": predictions(base), "untrained": predictions(base)},
                          0.1, SETTINGS)
    assert [r["verdict"] for r in rows] == [expected, expected] and rows[0]["n"] == 300


def agreement(guided: list[float], unconditional: list[float], head: str = "background") -> pd.DataFrame:
    rows = [dict(target=t, key=f"k{t}", head=head, measure=m, value=v, n=4, n_failed=int(m == "guided" and t == 0))
            for t, (g, u) in enumerate(zip(guided, unconditional)) for m, v in (("guided", g), ("unconditional", u))]
    return pd.DataFrame(rows).astype({"target": "Int64"})


ABOVE_CHANCE = pd.DataFrame([dict(head="background", accuracy=0.9, accuracy_low=0.85, accuracy_high=0.95,
                                  chance=0.5, above_chance=True)])


@pytest.mark.parametrize("guided, unconditional, expected", [
    ([1, 1, 0.75, 1, 1, 0.75, 1, 1], [0.25, 0.5, 0, 0.25, 0.5, 0.25, 0, 0.5], "holds"),
    ([0, 0.25, 0, 0, 0.25, 0, 0, 0], [0.75, 1, 0.5, 0.75, 1, 0.75, 0.5, 1], "contradicted"),
    ([0.5, 0.25, 0.75, 0.5, 0.5, 0.25, 0.5, 0.75], [0.5, 0.5, 0.5, 0.25, 0.75, 0.5, 0.5, 0.25], "undecided")])
def test_gist_by_conditioner(guided, unconditional, expected):
    row, = findings.gist(agreement(guided, unconditional), ABOVE_CHANCE, SETTINGS)
    assert row["verdict"] == expected and row["unit"] == "conditioners" and row["n"] == 8
    assert "1 failed samples left out" in row["note"] and "1 heads compared" in row["note"] and row["interval"].startswith("95% percentile bootstrap")


def test_a_classifier_no_better_than_chance_cannot_judge_and_heads_are_corrected_for_their_number():
    table = pd.concat([agreement([1] * 8, [0.25] * 8), agreement([1] * 8, [0.25] * 8, head="foreground")])
    judge = pd.concat([ABOVE_CHANCE, ABOVE_CHANCE.assign(head="foreground", accuracy=0.55, accuracy_low=0.45,
                                                         above_chance=False)])
    background, foreground = findings.gist(table, judge, SETTINGS)
    assert background["verdict"] == "holds" and background["interval"].startswith("97.5% percentile bootstrap")
    assert foreground["verdict"] == "undecided" and "cannot judge" in foreground["note"]


def test_markdown_shows_every_row_with_its_interval_and_verdict():
    rows = [findings.union_of_subspaces(heldout(0.1, 0.5), SETTINGS),
            findings.union_of_subspaces(heldout(0.1, 0.5, groups=1), SETTINGS)]
    text = findings.markdown(findings.table(rows), "Findings on test")
    assert "Intervals: 95% percentile bootstrap, 500 resamples." in text
    assert text.count("| union of subspaces") == 2 and "| holds |" in text and "fewer than two groups" in text
    assert "[" in text.splitlines()[6]
