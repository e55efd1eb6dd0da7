"""The paper's claims, each read off this run's tables next to its baseline, with intervals and a verdict.

Every row holds a measure and its baseline, each with a percentile-bootstrap interval (scipy.stats.
bootstrap; half-samples for the AMI, see semantic_clustering) over the unit the claim is about: images for sparsity, stability, clustering and the probe;
channels for the bimodal channel PR; held-out images for the union of subspaces; conditioners (not
samples: the samples of one target are alike) for the gist. The verdict reads the interval of the
difference: `holds` where it excludes 0 in the claim's direction, `contradicted` where it excludes 0 the
other way, `undecided` otherwise, and where the claim cannot be measured here (the note says why).

Undefined values (NaN: the PR of, or the cosine with, a zero vector; see semcore.stats) are left out
and counted in the note. The rows are computed, never typed in: `markdown` renders them for the README
and the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import bootstrap
from sklearn.metrics import adjusted_mutual_info_score

from semcore.plan.schema import default

VERDICTS = ("holds", "contradicted", "undecided")
COLUMNS = ["claim", "measure", "unit", "n", "value", "value_low", "value_high", "baseline", "baseline_value",
           "baseline_low", "baseline_high", "difference", "difference_low", "difference_high", "verdict", "interval",
           "note"]


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = default("findings.resamples")
    confidence: float = default("findings.confidence")
    seed: int = default("findings.seed")

    def describe(self, confidence: float | None = None, method: str = "percentile bootstrap") -> str:
        return f"{100 * (confidence or self.confidence):.4g}% {method}, {self.resamples} resamples"


def interval(statistic: Callable, sizes: tuple[int, ...], settings: Bootstrap, vectorized: bool = True,
             confidence: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, low, high) of a vector-valued statistic of unit indices: statistic(i, j, …) takes one
    index array per sample (resampled independently; pass the units of a paired comparison as one
    sample), with a last `axis` argument when vectorized."""
    samples = tuple(np.arange(n) for n in sizes)
    estimate = np.asarray(statistic(*samples, axis=-1) if vectorized else statistic(*samples), dtype=float)
    if min(sizes) < 2:  # nothing to resample
        return estimate, np.full_like(estimate, np.nan), np.full_like(estimate, np.nan)
    result = bootstrap(samples, statistic, vectorized=vectorized, n_resamples=settings.resamples,
                       confidence_level=confidence or settings.confidence, method="percentile",
                       random_state=settings.seed)
    return estimate, np.asarray(result.confidence_interval.low), np.asarray(result.confidence_interval.high)


def half_sample_interval(statistic: Callable, n: int, settings: Bootstrap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, low, high) of a vector-valued statistic of unit indices: the estimate plus the
    percentiles of the statistic's deviations from its mean over random halves of the units (drawn
    without replacement). The deviations, not the values: a statistic that depends on n (AMI does: on
    half the images each cluster holds half as many) is shifted on halves, and its spread is what serves."""
    rng = np.random.default_rng(settings.seed)
    estimate = np.asarray(statistic(np.arange(n)), dtype=float)
    if n < 4:
        return estimate, np.full_like(estimate, np.nan), np.full_like(estimate, np.nan)
    halves = np.array([statistic(rng.choice(n, n // 2, replace=False)) for _ in range(settings.resamples)])
    tail = 50 * (1 - settings.confidence)
    deviations = halves - halves.mean(axis=0)
    return (estimate, estimate + np.percentile(deviations, tail, axis=0),
            estimate + np.percentile(deviations, 100 - tail, axis=0))


def verdict(low: float, high: float, direction: str) -> str:
    """holds / contradicted / undecided from the interval of (value − baseline); direction: the claim's
    sign of the difference, "lower" or "higher"."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undecided"
    below, above = high < 0, low > 0
    if (below, above) == (False, False):
        return "undecided"
    return "holds" if below == (direction == "lower") else "contradicted"


def _row(claim: str, measure: str, unit: str, n: int, baseline: str, estimate, low, high, direction: str,
         how: str, note: str = "") -> dict:
    """A row from (value, baseline, value − baseline) estimates and their intervals (computed `how`)."""
    return dict(claim=claim, measure=measure, unit=unit, n=int(n), value=estimate[0], value_low=low[0],
                value_high=high[0], baseline=baseline, baseline_value=estimate[1], baseline_low=low[1],
                baseline_high=high[1], difference=estimate[2], difference_low=low[2], difference_high=high[2],
                verdict=verdict(low[2], high[2], direction), interval=how, note=note)


def _undecided(claim: str, measure: str, unit: str, baseline: str, note: str) -> dict:
    nan = np.full(3, np.nan)
    return _row(claim, measure, unit, 0, baseline, nan, nan, nan, "lower", "", note)


def _paired_means(value: np.ndarray, baseline: np.ndarray, settings: Bootstrap, confidence: float | None = None):
    """Means of two paired arrays and of their difference, with intervals over the pairs."""
    def means(i, axis=-1):
        return np.stack([value[i].mean(axis), baseline[i].mean(axis), (value[i] - baseline[i]).mean(axis)])
    return interval(means, (len(value),), settings, confidence=confidence)


def _middle_against_others(per_image: pd.DataFrame, claim: str, measure: str, lowest: bool,
                           settings: Bootstrap) -> dict:
    """The middle block (M) against the other block whose mean is lowest (highest), paired over the images
    where both are defined. per_image: key, block, value."""
    wide = per_image.pivot_table(index="key", columns="block", values="value", dropna=False)
    means = wide.mean()
    others = means.drop("M").dropna()
    direction = "lower" if lowest else "higher"
    if "M" not in means or others.empty or np.isnan(means["M"]):
        return _undecided(claim, measure, "images", "other blocks", "no defined value of M or of any other block")
    best = others.idxmin() if lowest else others.idxmax()
    pairs = wide[["M", best]].dropna()
    left_out = len(wide) - len(pairs)
    note = f"{left_out} of {len(wide)} images with an undefined value (zero ā) left out" if left_out else ""
    return _row(claim, measure, "images", len(pairs), f"{'lowest' if lowest else 'highest'} other block ({best})",
                *_paired_means(pairs["M"].to_numpy(), pairs[best].to_numpy(), settings), direction,
                settings.describe(), note)


def sparsity(block_pr: pd.DataFrame, settings: Bootstrap = Bootstrap()) -> dict:
    """The middle block's channel means are the sparsest: its mean PR over images is lower than every other
    block's (paper fig. 1)."""
    return _middle_against_others(block_pr.rename(columns={"pr": "value"}),
                                  "sparsity: the middle block is the sparsest", "mean PR of ā over images",
                                  lowest=True, settings=settings)


def stability(stability_table: pd.DataFrame, sigma1: float, settings: Bootstrap = Bootstrap()) -> dict:
    """The middle block's means change least with the noise level: per image, the mean cosine of ā(x_σ1)
    and ā(x_σ2) over σ2 ≠ σ1 (σ2 = σ1 is 1 by definition) is higher than every other block's (fig. 2)."""
    other_sigmas = stability_table[~np.isclose(stability_table.sigma, sigma1)]
    per_image = other_sigmas.groupby(["key", "block"], sort=False).cosine.agg(lambda c: c.mean(skipna=False))
    return _middle_against_others(per_image.rename("value").reset_index(),
                                  "stability: the middle block changes least with σ",
                                  f"mean cos(ā(x_σ1), ā(x_σ2)) over σ2 ≠ σ1 = {sigma1:g}", lowest=False,
                                  settings=settings)


def selectivity(summary: dict) -> dict:
    """Channels split into selective (active for few images) and non-selective: the channel PR is bimodal
    (fig. 3), by Hartigan's dip test and one against two Gaussian components (semcore.stats.bimodality),
    whose verdict this row carries: ΔBIC = BIC(one) − BIC(two) over the live channels, against 0."""
    claim, unit = "selective channels: channel PR is bimodal", "channels"
    if not np.isfinite(summary["delta_bic"]):
        return _undecided(claim, "ΔBIC, one − two Gaussian components of channel PR", unit, "one component",
                          f"too few distinct live channel PRs to test ({summary['live']} live channels)")
    measure = (f"ΔBIC, one − two Gaussian components of channel PR; dip {summary['dip']:.3g} "
               f"(p = {summary['dip_p']:.2g}); {summary['selective']} of {summary['live']} live channels selective")
    estimate = np.array([summary["delta_bic"], 0.0, summary["delta_bic"]])
    low = np.array([summary["delta_bic_low"], 0.0, summary["delta_bic_low"]])
    high = np.array([summary["delta_bic_high"], 0.0, summary["delta_bic_high"]])
    how = f"{100 * summary['confidence']:.4g}% percentile bootstrap, {summary['resamples']} resamples"
    row = _row(claim, measure, unit, summary["live"], "one component (ΔBIC = 0)", estimate, low, high, "higher",
               how, f"holds: dip p < {summary['alpha']:g} and ΔBIC's interval above 0; contradicted: below 0")
    return row | dict(verdict=summary["verdict"])


def union_of_subspaces(heldout: pd.DataFrame, settings: Bootstrap = Bootstrap()) -> dict:
    """Images sharing active selective channels lie near a common low-dimensional subspace: fitted on half
    of a group, it leaves less residual on the held-out half than the other groups' subspaces do (a ratio
    below 1), and less than random groups of the same sizes do (their ratio, ≈ 1, is the baseline)."""
    claim = "union of subspaces: a group's subspace fits its held-out members"
    measure = "held-out residual on the own group's subspace ÷ on the other groups' subspaces"
    real, random = (heldout[heldout.kind == kind] for kind in ("active channels", "random"))
    if real.group.nunique() < 2:
        return _undecided(claim, measure, "held-out images", "random groups of the same sizes",
                          "fewer than two groups of images share active selective channels")
    own = [frame.own_residual.to_numpy() for frame in (real, random)]
    other = [frame.other_residual.to_numpy() for frame in (real, random)]

    def ratios(i, j, axis=-1):
        a, b = (own[0][i].mean(axis) / other[0][i].mean(axis), own[1][j].mean(axis) / other[1][j].mean(axis))
        return np.stack([a, b, a - b])

    return _row(claim, measure, "held-out images", len(real), "random groups of the same sizes",
                *interval(ratios, (len(real), len(random)), settings), "lower", settings.describe(),
                f"{real.group.nunique()} groups; random groups resampled independently")


def _ami_and_difference(pairs: pd.DataFrame, columns: tuple[str, str]) -> Callable:
    """AMI of the label with each of two clusterings of the same images, and their difference, on indices."""
    label, first, second = (pairs[c].to_numpy() for c in ("label", *columns))

    def ami(i):
        a, b = (adjusted_mutual_info_score(label[i], clusters[i]) for clusters in (first, second))
        return np.array([a, b, a - b])
    return ami


BASELINES = (("pixels", "pixels"), ("untrained", "the untrained network's φ"))


def semantic_clustering(assignments: dict[str, pd.DataFrame], sigma: float, k: int,
                        settings: Bootstrap = Bootstrap()) -> list[dict]:
    """k-means clusters of φ share more information with the label than those of the baselines: AMI at k
    and σ, against pixels and the untrained network's φ, paired over the clustered images (resampled with
    their cluster assignments kept). assignments: {"phi" | "pixels" | "untrained": key, label, cluster}.

    Not the bootstrap: a resample's repeated images are ties that raise its mutual information (on the
    tiny run's 240 images, both the percentile and the basic interval excluded the estimate). Half-samples
    drawn without replacement make no ties, and the spread of a half-sample's estimate about its mean is
    about that of the whole sample's about the truth (1/(n/2) − 1/n = 1/n): half_sample_interval."""
    rows = []
    for representation, name in BASELINES:
        claim, measure = f"semantic clustering: φ beats {name}", f"k-means AMI with the label, k={k}, σ={sigma:g}"
        pairs = (assignments["phi"].merge(assignments[representation], on=["key", "label"], suffixes=("", "_base"))
                 .query("label >= 0"))
        if pairs.label.nunique() < 2:
            rows.append(_undecided(claim, measure, "images", name, "fewer than two labels among the clustered images"))
            continue
        rows.append(_row(claim, measure, "images", len(pairs), name,
                         *half_sample_interval(_ami_and_difference(pairs, ("cluster", "cluster_base")), len(pairs),
                                               settings), "higher", settings.describe(method="half-sample interval")))
    return rows


def probe(predictions: dict[str, pd.DataFrame], sigma: float, settings: Bootstrap = Bootstrap()) -> list[dict]:
    """A linear read-out of φ recovers the label better than one of the baselines: test accuracy, paired
    over the test images. predictions: {"phi" | "pixels" | "untrained": target, key, correct}."""
    label = {name: table[table.target == "label"].set_index("key").correct for name, table in predictions.items()}
    rows = []
    for representation, name in BASELINES:
        claim, measure = f"linear probe: φ beats {name}", f"probe accuracy on the label, test images, σ={sigma:g}"
        pairs = pd.concat([label["phi"], label[representation]], axis=1, join="inner").to_numpy(dtype=float)
        if not len(pairs):
            rows.append(_undecided(claim, measure, "test images", name, "no probe of the label (no labels)"))
            continue
        rows.append(_row(claim, measure, "test images", len(pairs), name,
                         *_paired_means(pairs[:, 0], pairs[:, 1], settings), "higher", settings.describe()))
    return rows


def gist(agreement: pd.DataFrame, accuracy: pd.DataFrame, settings: Bootstrap = Bootstrap()) -> list[dict]:
    """Self-guided samples keep the conditioner's gist: per classifier head, the share of a conditioner's
    guided samples the classifier puts in its class, against the same share of the unconditional samples
    scored against that conditioner (chance), paired over conditioners. One row per head; the intervals
    are Bonferroni-corrected for the number of heads. A head whose classifier is not clearly above chance
    on real test images (its accuracy's interval above the share of the commonest class) is undecided:
    it cannot judge. Failed samples are left out (semcore.gist.agreement) and counted."""
    per_target = agreement[agreement.target.notna()]
    heads = list(dict.fromkeys(per_target["head"]))
    confidence = 1 - (1 - settings.confidence) / max(1, len(heads))
    judge = accuracy.set_index("head")
    rows = []
    for head in heads:
        table = per_target[per_target["head"] == head]
        shares = table.pivot_table(index="target", columns="measure", values="value")
        pairs = shares[["guided", "unconditional"]].dropna()
        failed = int(table[table.measure.isin(["guided", "unconditional"])].n_failed.sum())
        measure = "share of guided samples in the conditioner's class, mean over conditioners"
        note = (f"{len(heads)} heads compared: intervals Bonferroni-corrected"
                + (f"; {failed} failed samples left out" if failed else ""))
        row = _row(f"self-guided samples keep the gist: {head}", measure, "conditioners", len(pairs),
                   "unconditional samples (chance)",
                   *_paired_means(pairs.guided.to_numpy(), pairs.unconditional.to_numpy(), settings, confidence),
                   "higher", settings.describe(confidence), note)
        classifier = judge.loc[head]
        if not classifier.above_chance:
            row |= dict(verdict="undecided",
                        note=f"{note}; the classifier cannot judge: test accuracy {classifier.accuracy:.2f} "
                             f"[{classifier.accuracy_low:.2f}, {classifier.accuracy_high:.2f}] vs chance "
                             f"{classifier.chance:.2f}")
        rows.append(row)
    return rows


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS).astype({"n": int})


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _with_interval(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "–"
    return f"{value:.3g} [{low:.3g}, {high:.3g}]" if np.isfinite(low) else f"{value:.3g}"


def markdown(findings: pd.DataFrame, title: str) -> str:
    """The findings as a Markdown table, numbers to 3 significant digits with their intervals."""
    intervals = "; ".join(i for i in dict.fromkeys(findings.interval) if i)
    lines = [f"### {title}", "", f"Intervals: {intervals}.", "",
             "| claim | measure (unit, n) | this run | baseline | verdict |", "|---|---|---|---|---|"]
    for row in findings.itertuples():
        verdict_text = row.verdict if row.verdict != "contradicted" else "**contradicted**"
        note = f" ({row.note})" if row.verdict == "undecided" and row.note else ""
        lines.append(f"| {row.claim} | {row.measure} ({row.unit}, {row.n}) | "
                     f"{_with_interval(row.value, row.value_low, row.value_high)} | {row.baseline}: "
                     f"{_with_interval(row.baseline_value, row.baseline_low, row.baseline_high)} | "
                     f"{verdict_text}{note} |")
    return "\n".join(lines) + "\n"
