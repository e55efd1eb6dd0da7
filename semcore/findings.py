"""The paper's claims, each read off this run's tables next to its baseline, and whether it holds here.

Each check returns one row: claim, measure, value, baseline (what it is compared with), baseline_value,
holds. The rows are computed, never typed in: `markdown` renders them for the report and the README.
A claim whose table is empty (e.g. no group of images shares enough active channels) does not hold,
and says why in its measure. Undefined values (NaN: the PR of, or the cosine with, a zero vector; see
semcore.stats) are left out of the means, and the measure or baseline says how many; a block with no
defined value has no mean (NaN) and cannot hold the claim.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

COLUMNS = ["claim", "measure", "value", "baseline", "baseline_value", "holds"]


def _row(claim: str, measure: str, value: float, baseline: str, baseline_value: float, holds: bool) -> dict:
    return dict(claim=claim, measure=measure, value=float(value), baseline=baseline,
                baseline_value=float(baseline_value), holds=bool(holds))


def _left_out(values: pd.Series) -> str:
    """How many of the values are undefined (NaN) and left out of their mean, when any."""
    missing = int(values.isna().sum())
    return f", {missing} of {len(values)} undefined (zero ā) left out" if missing else ""


def _middle_against_others(table: pd.DataFrame, column: str, lowest: bool) -> tuple[float, str, str, float]:
    """(M's mean of `column`, what of M was left out, the other block with the lowest or highest mean and
    what of it was left out, its mean), each mean over the block's defined values."""
    by_block = table.groupby("block")[column]
    means = by_block.mean()
    others = means.drop("M").dropna()
    middle = (means["M"], _left_out(by_block.get_group("M")))
    if others.empty:
        return *middle, "none with a defined value", np.nan
    best = others.idxmin() if lowest else others.idxmax()
    return *middle, f"{best}{_left_out(by_block.get_group(best))}", others[best]


def sparsity(block_pr: pd.DataFrame) -> dict:
    """The middle block's channel means are the sparsest: its mean PR is the lowest of all blocks."""
    value, left_out, best, baseline = _middle_against_others(block_pr, "pr", lowest=True)
    return _row("sparsity: the middle block is the sparsest", f"mean PR of ā, middle block (M){left_out}", value,
                f"lowest other block ({best})", baseline, value < baseline)


def stability(stability_table: pd.DataFrame) -> dict:
    """The middle block's means change least with the noise level: the highest mean cosine over σ2."""
    value, left_out, best, baseline = _middle_against_others(stability_table, "cosine", lowest=False)
    return _row("stability: the middle block changes least with σ", f"mean cos(ā(x_σ1), ā(x_σ2)), M{left_out}",
                value, f"most stable other block ({best})", baseline, value > baseline)


def selectivity(channels_summary: dict) -> dict:
    """Channels split into selective (active for few images) and non-selective: a bimodal channel PR."""
    return _row("selective channels: channel PR is bimodal", "selective channels (of the live ones)",
                channels_summary["selective"], "live channels", channels_summary["channels"] - channels_summary["dead"],
                channels_summary["bimodal"] and channels_summary["selective"] > 0)


def union_of_subspaces(groups: pd.DataFrame) -> dict:
    """Images sharing active selective channels lie in a low-dimensional subspace: lower effective
    dimension than random groups of the same sizes."""
    real, shuffled = (groups[groups.kind == kind].dimension for kind in ("active channels", "shuffled"))
    if real.empty:
        return _row("union of subspaces", "no group of images shares enough active channels", np.nan,
                    "shuffled groups", np.nan, False)
    return _row("union of subspaces: groups are low-dimensional", f"mean effective dimension of {len(real)} groups",
                real.mean(), "shuffled groups of the same sizes", shuffled.mean(), real.mean() < shuffled.mean())


def semantic_clustering(scores: pd.DataFrame) -> list[dict]:
    """k-means clusters of φ share more information with the label than those of the baselines (AMI at
    the largest k, first clustered σ), against pixels and against the untrained network's φ."""
    k = scores.k.max()
    ami = scores[(scores.method == "k-means") & (scores.k == k) & (scores.metric == "ami") & (scores.target == "label")]
    sigma = ami[ami.representation == "phi"].sigma.min()
    value = ami[(ami.representation == "phi") & (ami.sigma == sigma)].value.iloc[0]
    rows = []
    for representation, name in (("pixels", "pixels"), ("untrained", "untrained network's φ")):
        base = ami[(ami.representation == representation) & ((ami.sigma == sigma) | ami.sigma.isna())].value.iloc[0]
        rows.append(_row(f"semantic clustering: φ beats {name}", f"k-means AMI with the label, k={k}, σ={sigma:g}",
                         value, name, base, value > base))
    return rows


def gist(agreement: pd.DataFrame) -> list[dict]:
    """Self-guided samples keep the conditioner's gist: the classifier agrees with the conditioner's true
    class more often for them than for unconditional samples (chance), per head, over all targets. It holds
    when the difference exceeds two standard errors of a difference of two proportions (pooled, over the
    samples of each kind): with a few dozen samples, a few points are noise."""
    per_target = agreement[agreement.target.notna()]
    rows = []
    for head, table in per_target.groupby("head", sort=False):
        shares, counts = {}, {}
        for measure in ("guided", "unconditional"):
            rows_of = table[table.measure == measure]
            counts[measure] = rows_of.n.sum()
            shares[measure] = (rows_of.value * rows_of.n).sum() / counts[measure]
        pooled = (shares["guided"] * counts["guided"] + shares["unconditional"] * counts["unconditional"]) / (
            counts["guided"] + counts["unconditional"])
        error = np.sqrt(pooled * (1 - pooled) * (1 / counts["guided"] + 1 / counts["unconditional"]))
        rows.append(_row(f"self-guided samples keep the gist: {head}",
                         f"agreement with the conditioner, {counts['guided']} guided samples", shares["guided"],
                         "unconditional samples (chance)", shares["unconditional"],
                         shares["guided"] - shares["unconditional"] > 2 * error))
    return rows


def table(block_pr: pd.DataFrame, stability_table: pd.DataFrame, channels_summary: dict, groups: pd.DataFrame,
          scores: pd.DataFrame, agreement: pd.DataFrame | None) -> pd.DataFrame:
    rows = [sparsity(block_pr), stability(stability_table), selectivity(channels_summary), union_of_subspaces(groups),
            *semantic_clustering(scores), *(gist(agreement) if agreement is not None else [])]
    return pd.DataFrame(rows, columns=COLUMNS)


def read_channels_summary(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def markdown(findings: pd.DataFrame, title: str) -> str:
    """The findings as a Markdown table, numbers to 3 significant digits."""
    lines = [f"### {title}", "", "| claim | measure | this run | baseline | holds |", "|---|---|---|---|---|"]
    for row in findings.itertuples():
        lines.append(f"| {row.claim} | {row.measure} | {row.value:.3g} | {row.baseline}: {row.baseline_value:.3g} | "
                     f"{'yes' if row.holds else '**no**'} |")
    return "\n".join(lines) + "\n"
