"""Runs side by side: a study's table of one analysis (every run's table, a `run` column first) and its
figure, one panel or one line per run, in the study's order of runs.

Each run's table is read as its rule wrote it (semcore.tables); nothing is recomputed here, so a study's
figure shows exactly the numbers of the runs' own reports.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow as pa

from semcore import figures, tables
from semcore.figures import COLUMN, SIGMA, save

# Each analysis's table schema in a run (the study's adds `run` first).
RUN_SCHEMAS = {
    "findings": tables.FINDINGS,
    "block_pr": tables.BLOCK_PR,
    "stability": tables.STABILITY,
    "channel_pr": tables.CHANNELS,
    "semantic_scores": tables.SEMANTIC_SCORES,
    "block_semantics": tables.BLOCK_SEMANTICS,
    "emergence": tables.EMERGENCE,
    "gist": tables.GIST_AGREEMENT,
}


def study_schema(analysis: str) -> pa.Schema:
    return pa.schema([("run", pa.string()), *RUN_SCHEMAS[analysis]])


def gathered(paths: dict[str, str]) -> pd.DataFrame:
    """Every run's table (run name → its Parquet file), one after another, the run's name first."""
    frames = [pd.read_parquet(path).assign(run=run) for run, path in paths.items()]
    table = pd.concat(frames, ignore_index=True)
    return table[["run", *table.columns.drop("run")]]


def _panels(runs: list[str], width: float = 1.6, height: float = 1.8, sharey: bool = True):
    fig, axes = plt.subplots(1, len(runs), figsize=(0.4 + width * len(runs), height), sharey=sharey, squeeze=False,
                             layout="constrained")
    for ax, run in zip(axes[0], runs):
        ax.set_title(run)
    return fig, axes[0]


def findings_figure(table: pd.DataFrame, path: str) -> None:
    """One panel per claim: each run's measure with its interval (filled) and its baseline's (open), the
    verdict at the right. Claims measured in different units each keep their own axis."""
    claims = list(dict.fromkeys(table.claim))
    runs = list(dict.fromkeys(table.run))
    fig, axes = plt.subplots(len(claims), 1, figsize=(2 * COLUMN, 0.3 + len(claims) * (0.75 + 0.22 * len(runs))),
                             squeeze=False, layout="constrained")
    for ax, claim in zip(axes[:, 0], claims):
        rows = table[table.claim == claim].set_index("run").reindex(runs)
        y = np.arange(len(runs))
        ax.errorbar(rows.value, y, xerr=_spread(rows, "value"), fmt="o", color="tab:green", ms=4, label="this run")
        ax.errorbar(rows.baseline_value, y + 0.25, xerr=_spread(rows, "baseline"), fmt="o", mfc="white",
                    color="0.4", ms=4, label="baseline")
        for i, verdict in enumerate(rows.verdict):
            ax.annotate(verdict, (1.01, i), xycoords=("axes fraction", "data"), fontsize=6, va="center",
                        color={"holds": "tab:green", "contradicted": "tab:red"}.get(verdict, "0.3"))
        ax.set_yticks(y, runs, fontsize=6)
        ax.set_ylim(len(runs) - 0.5, -0.5)
        first = rows.dropna(subset=["measure"]).iloc[0]
        ax.set_title(figures.wrap(claim, 90, 1), fontsize=7, loc="left")
        ax.set_xlabel(figures.wrap(f"{first.measure}; baseline: {first.baseline}", 110, 2), fontsize=5.5)
        ax.tick_params(axis="x", labelsize=6)
    axes[0, 0].legend(fontsize=6, loc="best")
    save(fig, path)


def _spread(rows: pd.DataFrame, column: str) -> np.ndarray:
    """Distances from a value to its interval's ends, 0 where it has none (errorbar's xerr)."""
    value = rows[column if column == "value" else "baseline_value"]
    low, high = rows[f"{column}_low"], rows[f"{column}_high"]
    return np.nan_to_num(np.vstack([value - low, high - value]), nan=0.0).clip(min=0)


def findings_summary(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Run × claim: the value with its interval, and the verdict."""
    cell = table.apply(lambda r: f"{r.value:.3g} [{r.value_low:.3g}, {r.value_high:.3g}]: {r.verdict}"
                       if pd.notna(r.value_low) else f"{r.value:.3g}: {r.verdict}", axis=1)
    wide = table.assign(cell=cell).pivot(index="run", columns="claim", values="cell")
    wide = wide.reindex(index=list(dict.fromkeys(table.run)), columns=list(dict.fromkeys(table.claim)))
    return [("Findings: value [interval]: verdict, per run", wide.rename_axis(index=None, columns=None))]


def block_pr_figure(table: pd.DataFrame, path: str) -> None:
    """Per run: each block's per-image participation ratio (box: quartiles; the middle block shaded)."""
    runs = list(dict.fromkeys(table.run))
    fig, axes = _panels(runs)
    for ax, run in zip(axes, runs):
        rows = table[table.run == run]
        blocks = list(dict.fromkeys(rows.block))
        ax.boxplot([rows[rows.block == b].pr for b in blocks], tick_labels=blocks, showfliers=False, widths=0.6)
        _shade_middle(ax, blocks)
    axes[0].set_ylabel("PR per image (0–1)")
    fig.suptitle("Sparsity: participation ratio of each block's channel means", fontsize=8)
    save(fig, path)


def _shade_middle(ax, blocks: list[str]) -> None:
    if "M" in blocks:
        i = blocks.index("M") + 1
        ax.axvspan(i - 0.5, i + 0.5, color="tab:green", alpha=0.12, lw=0)


def stability_figure(table: pd.DataFrame, path: str) -> None:
    """Per run: each block's mean cosine similarity of ā(x_σ1) and ā(x_σ2) against σ2."""
    runs = list(dict.fromkeys(table.run))
    fig, axes = _panels(runs)
    for ax, run in zip(axes, runs):
        means = table[table.run == run].groupby(["block", "sigma"], sort=False).cosine.mean().unstack("block")
        for block in means.columns:
            style = dict(lw=2, color="tab:green") if block == "M" else dict(lw=0.8)
            ax.plot(means.index, means[block], label=block, **style)
        ax.set_xlabel(f"σ₂ {SIGMA}", fontsize=6)
    axes[0].set_ylabel("mean cosine")
    axes[-1].legend(fontsize=5, title="block", title_fontsize=5)
    fig.suptitle("Stability: cosine of each block's means at σ₁ and σ₂", fontsize=8)
    save(fig, path)


def channel_pr_figure(table: pd.DataFrame, path: str) -> None:
    """Per run: the histogram of the channels' participation ratio across images (dead channels left out),
    selective channels in colour."""
    runs = list(dict.fromkeys(table.run))
    fig, axes = _panels(runs)
    bins = np.linspace(0, 1, 26)
    for ax, run in zip(axes, runs):
        rows = table[(table.run == run) & ~table.dead]
        ax.hist([rows.pr[~rows.selective], rows.pr[rows.selective]], bins, stacked=True,
                color=["0.6", "tab:purple"], label=["non-selective", "selective"])
        ax.set_xlabel(f"channel PR ({len(rows)} live)", fontsize=6)
    axes[0].set_ylabel("channels")
    axes[-1].legend(fontsize=5)
    fig.suptitle("Selectivity: channel participation ratio across images", fontsize=8)
    save(fig, path)


def semantic_scores_figure(table: pd.DataFrame, path: str) -> None:
    """The label's k-means AMI (largest k) and linear-probe accuracy: per run, φ against the untrained
    network and pixels."""
    label = table[table.target == "label"]
    k = label.k.max()
    panels = [(f"k-means AMI, k = {k:g}", (label.method == "k-means") & (label.k == k) & (label.metric == "ami")),
              ("linear probe accuracy", label.method == "linear probe")]
    runs = list(dict.fromkeys(table.run))
    fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN, 0.9 + 0.3 * len(runs)), sharey=True, layout="constrained")
    for ax, (title, rows) in zip(axes, panels):
        values = label[rows].pivot_table(index="run", columns="features", values="value").reindex(runs)
        _grouped_bars(ax, values)
        ax.set(title=title, xlim=(min(0, np.nanmin(values.to_numpy(), initial=0)), 1))
    axes[0].invert_yaxis()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=6)
    save(fig, path)


def _grouped_bars(ax, values: pd.DataFrame) -> None:
    """Horizontal bars: a group per run (row), a bar per feature set (column), φ first."""
    names = figures.feature_order(values.columns)
    colours = figures.feature_colours(names)
    height = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.barh(np.arange(len(values)) + (i - (len(names) - 1) / 2) * height, values[name], height,
                color=colours[name], label=figures.feature_set_name(name))
    ax.set_yticks(range(len(values)), values.index)
    ax.axvline(0, color="k", lw=0.5)


def block_semantics_figure(table: pd.DataFrame, path: str) -> None:
    """Per run (a column), where the semantics live: the label's k-means AMI (top) and probe accuracy
    (bottom) of every block's means at every σ, on one colour scale per score across runs."""
    runs = list(dict.fromkeys(table.run))
    label = table[table.target == "label"]
    fig, axes = plt.subplots(2, len(runs), figsize=(0.6 + 2.2 * len(runs), 4.2), squeeze=False, layout="constrained")
    for row, (score, name) in enumerate(figures.BLOCK_SCORES):
        scores = label[label.score == score]
        limits = (min(0, scores.value.min()), scores.value.max())
        for column, run in enumerate(runs):
            rows = scores[scores.run == run]
            blocks = rows.dropna(subset="block_index").sort_values("block_index").block.unique()
            image = figures.block_map(axes[row, column], rows, blocks, f"{run}\n{name} (label", limits)
            axes[row, column].title.set_fontsize(6)
        fig.colorbar(image, ax=axes[row, :], shrink=0.8)
    save(fig, path)


def emergence_figure(table: pd.DataFrame, path: str) -> None:
    """The label's k-means AMI (largest k) and probe accuracy of φ against the fraction of each run's
    training, one line per run."""
    runs = list(dict.fromkeys(table.run))
    label = table[(table.target == "label") & (table.method.isin(["k-means", "linear probe"]))]
    fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN, 2), layout="constrained")
    for ax, (method, metric, title) in zip(axes, [("k-means", "ami", "k-means AMI"),
                                                  ("linear probe", "probe accuracy", "linear probe accuracy")]):
        for run in runs:
            rows = label[(label.run == run) & (label.method == method) & (label.metric == metric)]
            rows = rows[rows.k.isna() | (rows.k == rows.k.max())].sort_values("step")
            ax.plot(rows.step / max(rows.step.max(), 1), rows.value, "o-", ms=3, label=run)
        ax.set(title=title, xlabel="fraction of training (step / last step)")
    axes[0].legend(fontsize=6)
    save(fig, path)


def gist_figure(table: pd.DataFrame, path: str) -> None:
    """Per run, the share of each sample set (self-guided, unconditional, real of the same class, the
    conditioner itself) that the gist classifier puts in the conditioner's class, per head, over targets."""
    overall = table[table.target.isna()]
    runs = list(dict.fromkeys(table.run))
    fig, axes = _panels(runs, width=2.0, height=2.2)
    for ax, run in zip(axes, runs):
        values = overall[overall.run == run].pivot_table(index="head", columns="measure", values="value", sort=False)
        values = values[[m for m in figures.GIST_MEASURES if m in values]].rename(columns=figures.GIST_MEASURES)
        values.plot.bar(ax=ax, legend=False, width=0.8, rot=40)
        ax.set_xlabel("classifier head", fontsize=6)
    axes[0].set_ylabel("share in the conditioner's class")
    axes[-1].legend(fontsize=5)
    save(fig, path)


FIGURES = {
    "findings": findings_figure,
    "block_pr": block_pr_figure,
    "stability": stability_figure,
    "channel_pr": channel_pr_figure,
    "semantic_scores": semantic_scores_figure,
    "block_semantics": block_semantics_figure,
    "emergence": emergence_figure,
    "gist": gist_figure,
}
