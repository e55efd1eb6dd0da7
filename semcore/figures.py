"""Figures of the pipeline's outputs (matplotlib, Agg backend: no display needed).

Every figure is drawn at a paper's column width (COLUMN) in one style (STYLE, set on import: 7-pt text),
so that it reads at that size in print and in the Snakemake report: panels are stacked rather than set
side by side and shrunk."""

from __future__ import annotations

import html
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from semcore.files import atomic  # noqa: E402
from semcore.plan.names import parse_feature_set  # noqa: E402
from semcore.subspaces import GROUPS, RANDOM  # noqa: E402

COLUMN = 3.3  # inches: one column of a two-column paper
STYLE = {
    "font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7, "xtick.labelsize": 6.5, "ytick.labelsize": 6.5,
    "legend.fontsize": 6.5, "legend.title_fontsize": 6.5, "figure.titlesize": 8, "figure.labelsize": 7,
    "axes.spines.top": False, "axes.spines.right": False, "axes.titlepad": 3, "lines.linewidth": 1.2,
    "lines.markersize": 3, "legend.frameon": False, "legend.handlelength": 1.6, "legend.borderaxespad": 0.2,
    "figure.constrained_layout.use": True, "savefig.dpi": 300, "image.interpolation": "nearest",
}
plt.rcParams.update(STYLE)

# Units, said the same way on every axis.
SIGMA = "(noise std, pixels in [0, 1])"  # after a σ
PR = "participation ratio (0–1)"
STEP = "training step"
MIDDLE, OTHER = "tab:green", "tab:blue"  # the middle block (φ's) against the others
KIND_COLOURS = {"phi": plt.cm.Greens, "untrained": plt.cm.Greys, "pixels": plt.cm.Oranges}


def save(fig, path: str, dpi: int = 300) -> None:
    with atomic(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix[1:])
    plt.close(fig)


def note(text: str, path: str) -> None:
    """A figure that says why there is nothing to plot."""
    fig, ax = plt.subplots(figsize=(COLUMN, 1.0))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    save(fig, path)


def wrap(text: str, width: int, lines: int = 2) -> str:
    """Text in lines of `width` characters, at most `lines` per paragraph, breaking after a "/" too
    ("stripes/square")."""
    return "\n".join(textwrap.fill(part.replace("/", "/ "), width, max_lines=lines, placeholder="…")
                     .replace("/ ", "/") for part in str(text).split("\n"))


def _colours(n: int, skip: str | None = None) -> list[str]:
    """n colours of the default cycle, leaving out one kept for something else."""
    cycle = [c for c in map(matplotlib.colors.to_hex, plt.rcParams["axes.prop_cycle"].by_key()["color"])
             if c != matplotlib.colors.to_hex(skip or "w")]
    return [cycle[i % len(cycle)] for i in range(n)]


def _log_axis(axis) -> None:
    """Ticks of a log-scale axis at 1, 2 and 5 × 10ⁿ, written as plain numbers (50, not 5×10¹)."""
    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def training_curve(log: pd.DataFrame, path: str) -> None:
    """Loss against step (top) and test PSNR of the denoised against the noisy input at each eval σ
    (bottom); an imported network has no loss: its panel says so."""
    fig, (ax_loss, ax_psnr) = plt.subplots(2, 1, figsize=(COLUMN, 3.6), sharex=True)
    steps = log[log.kind == "train"]
    if len(steps):
        ax_loss.plot(steps.step, steps.loss)
        ax_loss.set(yscale="log")
        _log_axis(ax_loss.yaxis)
    else:
        imported = log[log.kind == "import"].iloc[0]
        ax_loss.text(0.5, 0.5, f"imported ({imported.format} format),\nnot trained here", ha="center", va="center",
                     transform=ax_loss.transAxes)
    ax_loss.set(ylabel="loss per image\n(Σ squared error, log scale)", title="Training loss")
    evals = log[log.kind == "eval"]
    handles = []
    for (sigma, rows), colour in zip(evals.groupby("sigma"), _colours(evals.sigma.nunique())):
        ax_psnr.plot(rows.step, rows.psnr_denoised, "o-", color=colour)
        ax_psnr.axhline(rows.psnr_noisy.iloc[-1], color=colour, ls="--", lw=0.8)
        handles.append(Line2D([], [], color=colour, label=f"σ = {sigma:g}"))
    handles += [Line2D([], [], color="k", marker="o", label="denoised"),
                Line2D([], [], color="k", ls="--", lw=0.8, label="noisy input")]
    ax_psnr.set(xlabel=STEP, ylabel="test PSNR (dB)", title="Denoising the test split")
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)))
    save(fig, path)


def block_pr_histograms(table: pd.DataFrame, sigma: float, path: str) -> None:
    """Per block, the histogram of per-image participation ratios, the mean dotted (paper fig. 1)."""
    blocks = list(dict.fromkeys(table.block))
    columns = 2 if len(blocks) <= 4 else 3
    rows = math.ceil(len(blocks) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(COLUMN, 0.45 + 1.0 * rows), sharex=True, squeeze=False)
    for ax, block in zip(axes.flat, blocks):
        pr = table[table.block == block].pr.dropna()
        ax.hist(pr, bins=20, range=(0, 1), color=MIDDLE if block == "M" else OTHER)
        ax.axvline(pr.mean(), color="k", ls=":", lw=0.8)
        ax.set(title=f"{block}: mean {pr.mean():.2f}", xlim=(0, 1), xticks=[0, 0.5, 1])
        ax.tick_params(labelbottom=True)
    for ax in axes.flat[len(blocks):]:
        ax.axis("off")
    fig.supxlabel("participation ratio of ā (0–1; lower: sparser)")
    fig.supylabel("images")
    fig.suptitle(f"Sparsity per block (σ = {sigma:g}; M: the middle block)")
    save(fig, path)


def stability_curves(table: pd.DataFrame, sigma1: float, path: str) -> None:
    """Mean cosine similarity of ā(x_σ1) and ā(x_σ2) against σ2, one line per block (paper fig. 2)."""
    fig, ax = plt.subplots(figsize=(COLUMN, 2.4))
    blocks = list(dict.fromkeys(table.block))
    colours = iter(_colours(len(blocks), skip=MIDDLE))
    for block in blocks:
        curve = table[table.block == block].groupby("sigma").cosine.mean()
        middle = block == "M"
        ax.plot(curve.index, curve.to_numpy(), "o-", lw=2.2 if middle else 1, color=MIDDLE if middle else next(colours),
                label=block, zorder=1.5 if middle else 2)  # thick, so beneath: the others stay visible
    ax.axvline(sigma1, color="0.5", ls=":", lw=0.8)
    ax.annotate("σ₁", (sigma1, 0), xycoords=("data", "axes fraction"), xytext=(2, 2), textcoords="offset points")
    ax.set(xlabel=f"σ₂ {SIGMA}", ylabel="cosine similarity of ā at σ₁ and σ₂",
           title=f"Stability across noise levels (σ₁ = {sigma1:g})")
    ax.legend(title="block", ncol=2)
    save(fig, path)


def block_semantics(table: pd.DataFrame, path: str, target: str = "label") -> None:
    """Where the semantics live (semcore.block_semantics): for one target, k-means AMI (top) and the
    cross-validated probe accuracy (bottom) of every block (rows, network order) at every σ (columns),
    values in the cells, the middle block M framed, the pixels' score in each panel's title."""
    rows = table[table.target == target]
    panels = [(name, rows[rows.score == score]) for score, name in BLOCK_SCORES]
    panels = [panel for panel in panels if (panel[1].block != "pixels").any()]
    if not panels:
        note(f"No block scores for the target {target!r}.", path)
        return
    blocks = rows.dropna(subset="block_index").sort_values("block_index").block.unique()
    fig, axes = plt.subplots(len(panels), 1, figsize=(COLUMN, 0.6 + len(panels) * (0.55 + 0.3 * len(blocks))),
                             squeeze=False)
    for ax, (name, scores) in zip(axes[:, 0], panels):
        fig.colorbar(block_map(ax, scores, blocks, f"{name} ({target}"), ax=ax, shrink=0.9)
    fig.supylabel("block (network order)")
    fig.suptitle("Where the semantics live: every block's ā at every σ")
    save(fig, path)


BLOCK_SCORES = (("ami", "k-means AMI"), ("probe_accuracy", "cross-validated probe accuracy"))


def block_map(ax, scores: pd.DataFrame, blocks, title: str, limits: tuple[float, float] | None = None):
    """One score's block × σ heatmap on `ax` (scores: rows of one score and target of a block-semantics
    table), values in the cells, M framed; the title gets k and the pixels' score. Returns the image."""
    matrix = scores[scores.block != "pixels"].pivot(index="block", columns="sigma", values="value").loc[blocks]
    pixels = scores[scores.block == "pixels"].value
    low, high = limits or (np.nanmin(matrix.to_numpy()), np.nanmax(matrix.to_numpy()))
    image = ax.imshow(matrix.to_numpy(), cmap="viridis", aspect="auto", vmin=low, vmax=high)
    for (i, j), value in np.ndenumerate(matrix.to_numpy()):
        light = np.isfinite(value) and value > (low + high) / 2
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="k" if light else "w")
    k = scores.k.dropna()
    ax.set(xticks=range(matrix.shape[1]), xticklabels=[f"{sigma:g}" for sigma in matrix.columns],
           yticks=range(len(blocks)), yticklabels=blocks, xlabel=f"σ {SIGMA}",
           title=f"{title}{f', k = {k.iloc[0]}' if len(k) else ''})"
                 + (f"; pixels: {pixels.iloc[0]:.2f}" if len(pixels) else ""))
    if "M" in blocks:
        middle = list(blocks).index("M")
        ax.add_patch(matplotlib.patches.Rectangle((-0.5, middle - 0.5), matrix.shape[1], 1, fill=False,
                                                  edgecolor=MIDDLE, lw=2))
        ax.get_yticklabels()[middle].set(color=MIDDLE, fontweight="bold")
    ax.spines[:].set_visible(False)
    return image


def channel_pr_histogram(table: pd.DataFrame, summary: dict, path: str) -> None:
    """The distribution of the live channels' PR across images (paper fig. 3): the bimodality test's
    numbers (semcore.stats.bimodality) in the title, the densities of the two fitted Gaussian components
    when fitted, and the selective / non-selective split with its threshold line only when some channel
    is selective (`summary`: channel_table's)."""
    pr, selective = table.pr[~table.dead], table.selective[~table.dead]
    if pr.empty:
        return note(f"all {len(table)} middle-block channels are dead (zero on every image):\nno channel PR to test",
                     path)
    fig, ax = plt.subplots(figsize=(COLUMN, 2.5))
    bins, span = 40, (0, 1)
    if selective.any():
        ax.hist([pr[selective], pr[~selective]], bins=bins, range=span, stacked=True, color=["tab:orange", "tab:gray"],
                label=[f"selective ({selective.sum()})", f"non-selective ({(~selective).sum()})"])
        threshold = summary["threshold"]
        ax.axvline(threshold, color="k", ls="--", lw=0.8)
        ax.annotate(f"threshold {threshold:.2f}", (threshold, 1), xycoords=("data", "axes fraction"),
                    xytext=(3, -3), textcoords="offset points", va="top")
    else:
        ax.hist(pr, bins=bins, range=span, color="tab:gray", label=f"live ({len(pr)}), none selective")
    grid = np.linspace(*span, 400)
    for (weight, mean, sd), colour in zip(summary["components"], ("tab:red", "tab:blue")):
        density = weight * np.exp(-0.5 * ((grid - mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
        ax.plot(grid, density * len(pr) * (span[1] - span[0]) / bins, color=colour, lw=0.9,
                label=f"fit: mean {mean:.2f}, weight {weight:.2f}")
    if np.isnan(summary["dip"]):
        numbers = f"too few distinct PRs to test: bimodality {summary['verdict']}"
    else:
        numbers = (f"dip {summary['dip']:.3f} (p = {summary['dip_p']:.2g}), ΔBIC {summary['delta_bic']:.1f} "
                   f"[{summary['delta_bic_low']:.1f}, {summary['delta_bic_high']:.1f}]\n"
                   f"([ ]: {summary['confidence']:.0%} bootstrap interval): bimodality {summary['verdict']}")
    ax.set(xlabel=f"{PR} of a channel across images", ylabel="channels", xlim=span,
           title=f"Channel selectivity of the middle block\n{numbers}")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.1)  # room for the threshold's label
    fig.legend(loc="outside lower center", ncol=2)
    save(fig, path)


# Montage geometry, in inches: the row titles' column, the largest image, the space of a label below one.
TITLE_WIDTH, MAX_CELL, LABEL_HEIGHT, HEADER_HEIGHT = 0.85, 0.45, 0.2, 0.16


def _image_rows(fig, top: float, rows: list[tuple[str, list]], labels: list[list[str]] | None,
                columns: list[str] | None, cell: float) -> None:
    """Draws `rows` (title, images; None leaves a cell empty) on fig from `top` inches below its top edge
    down: each row's title on its left, `columns` above the first row, each image's label (`labels`)
    below it."""
    width, height = fig.get_size_inches()
    row_height = cell + (LABEL_HEIGHT if labels else 0)
    if columns:
        for j, name in enumerate(columns[:max(len(images) for _, images in rows)]):  # not over empty columns
            fig.text((TITLE_WIDTH + (j + 0.5) * cell) / width, 1 - (top + HEADER_HEIGHT - 0.02) / height,
                     wrap(name, 12, 1), ha="center", va="bottom", fontsize=6)
        top += HEADER_HEIGHT
    for i, (title, images) in enumerate(rows):
        y = top + i * row_height + cell  # the images' bottom edge, from the top
        fig.text((TITLE_WIDTH - 0.06) / width, 1 - (y - cell / 2) / height, wrap(title, 14, 3), ha="right",
                 va="center", fontsize=6.5)
        for j, image in enumerate(images):
            if image is None:
                continue
            ax = fig.add_axes([(TITLE_WIDTH + j * cell + 0.02) / width, 1 - (y - 0.02) / height,
                               (cell - 0.04) / width, (cell - 0.04) / height])
            ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
            ax.axis("off")
            if labels:
                ax.text(0.5, -0.04, wrap(labels[i][j], 10), transform=ax.transAxes, ha="center", va="top",
                        fontsize=5, linespacing=1.0)


def _montage_size(rows: list[tuple[str, list]]) -> tuple[float, float]:
    """(cell, figure width) for rows of images in a column's width, images at most MAX_CELL inches."""
    cell = min(MAX_CELL, (COLUMN - TITLE_WIDTH) / max(len(images) for _, images in rows))
    return cell, TITLE_WIDTH + cell * max(len(images) for _, images in rows) + 0.05


def montage(rows: list[tuple[str, list]], path: str, columns: list[str] | None = None,
            labels: list[list[str]] | None = None, title: str | None = None) -> None:
    """One row of images per (title, images), the title on its left: e.g. the images that activate a
    channel most; None leaves a cell empty. `columns` names the columns ("query", "1"…), `labels` each
    image (one list of strings per row: its label, drawn below it), `title` the figure."""
    if not rows:
        return note("no channel to show", path)
    cell, width = _montage_size(rows)
    title = wrap(title, int(width * 14), 3) if title else ""  # ~14 characters of 8 pt to the inch
    heading = 0.08 + 0.15 * len(title.splitlines())
    used = (HEADER_HEIGHT if columns else 0) + len(rows) * (cell + (LABEL_HEIGHT if labels else 0))
    fig = plt.figure(figsize=(width, heading + used + 0.04), layout="none")
    fig.suptitle(title, y=1 - 0.04 / (heading + used + 0.04), va="top")
    _image_rows(fig, heading, rows, labels, columns, cell)
    save(fig, path)


def subspace_comparison(groups: pd.DataFrame, pairs: pd.DataFrame, heldout: pd.DataFrame, path: str,
                        shown: int = 4000) -> None:
    """The union of subspaces (fig. 5), tested on held-out images (semcore.subspaces): top, each held-out
    image's relative residual on its own group's subspace against that on the other groups' (at most
    `shown` images of a kind drawn; the means and their ratio over all), groups sharing active selective
    channels over random groups; below, descriptive (all channels of all members): the groups'
    participation dimension and the mean principal angle between two groups' subspaces."""
    if heldout.empty:
        return note("fewer than two groups of images share active selective channels:\n"
                     "no subspace to compare, the claim is undecided\n"
                     "(no selective channel, or lower stats.min_group_size or stats.active_fraction)", path)
    fig, axes = plt.subplot_mosaic([["heldout", "heldout"], ["dimension", "angle"]], figsize=(COLUMN, 4.4),
                                   height_ratios=[1.6, 1])
    ax = axes["heldout"]
    rng = np.random.default_rng(0)
    for kind, colour, name in ((RANDOM, "tab:gray", "random groups"), (GROUPS, MIDDLE, "same active channels")):
        rows = heldout[heldout.kind == kind].dropna(subset=["own_residual", "other_residual"])
        own, other = rows.own_residual.mean(), rows.other_residual.mean()
        drawn = rows.iloc[rng.permutation(len(rows))[:shown]]
        ax.scatter(drawn.other_residual, drawn.own_residual, s=1.5, alpha=0.35, lw=0, color=colour, rasterized=True)
        ax.scatter(other, own, s=40, marker="X", color=colour, edgecolor="k", lw=0.6, zorder=3,
                   label=f"{name}: ratio {own / other:.2f}\n{rows.group.nunique()} groups, {len(rows)} images")
    top = max(1.0, heldout.other_residual.max())  # a weighted sum: can pass 1 a little
    ax.plot([0, top], [0, top], color="k", lw=0.7, ls="--", zorder=1)
    ax.set(xlim=(0, top), ylim=(0, 1), xlabel="residual on the other groups' subspaces",
           ylabel="residual on its own group's subspace",
           title="Held-out images (below the line: nearer\ntheir own group's subspace than the others')")
    ax.legend(loc="upper left", title="× mean; ratio: own ÷ other", alignment="left")

    names = ["same\nactive ch.", "random"]
    for key, values, ylabel, title in (
            ("dimension", [groups[groups.kind == k].pr_dimension for k in (GROUPS, RANDOM)],
             "participation dimension", f"within a group (all\nchannels, {(groups.kind == GROUPS).sum()} groups)"),
            ("angle", [pairs[pairs.kind == k].mean_angle.dropna() for k in (GROUPS, RANDOM)],
             "mean principal angle (°)", f"between groups\n({(pairs.kind == GROUPS).sum()} pairs)")):
        axes[key].boxplot(values, tick_labels=names, widths=0.5, medianprops={"color": "k"},
                          flierprops={"markersize": 2})
        axes[key].set(ylabel=ylabel, title=title)
    fig.suptitle("Union of subspaces, tested on held-out images")
    save(fig, path)


def factor_heatmap(table: pd.DataFrame, path: str, top: int = 12) -> None:
    """Mutual information of channels (the `top` most informative) with each ground-truth factor."""
    matrix = table.pivot(index="factor", columns="channel", values="mutual_information")
    matrix = matrix[matrix.max().sort_values(ascending=False).index[:top]]
    fig, ax = plt.subplots(figsize=(COLUMN, 0.9 + 0.2 * len(matrix)))
    image = ax.imshow(matrix.to_numpy(), cmap="viridis", aspect="auto")
    ax.set(xticks=range(matrix.shape[1]), xticklabels=matrix.columns, yticks=range(len(matrix)),
           yticklabels=matrix.index, xlabel=f"middle-block channel (the {matrix.shape[1]} most informative)",
           title="Which channel encodes which scene factor")
    ax.tick_params(axis="x", labelsize=6)
    ax.spines[:].set_visible(False)
    fig.colorbar(image, ax=ax, label="mutual information (nats)", shrink=0.9)
    save(fig, path)


def feature_set_name(name: str) -> str:
    """"phi-s0.1" → "φ, σ=0.1"; "untrained-s0.1" → "untrained φ, σ=0.1"; "pixels" → "pixels"."""
    kind, sigma = parse_feature_set(name)
    return kind if sigma is None else f"{'untrained φ' if kind == 'untrained' else 'φ'}, σ={sigma:g}"


def feature_colours(names: list[str]) -> dict[str, tuple]:
    """A shade of its kind's colour map per feature set: φ green, untrained φ grey, pixels orange."""
    kinds = [parse_feature_set(name)[0] for name in names]
    return {name: KIND_COLOURS[kind](0.75 - 0.3 * kinds[:i].count(kind) / max(1, kinds.count(kind)))
            for i, (name, kind) in enumerate(zip(names, kinds))}


def feature_order(names) -> list[str]:
    """φ first, then untrained φ, then pixels."""
    return sorted(names, key=lambda name: (("phi", "untrained", "pixels").index(parse_feature_set(name)[0]), name))


def semantic_scores(table: pd.DataFrame, path: str) -> None:
    """AMI of the k-means clusters at each k and the linear-probe accuracy, per target, one bar per
    feature set: how much of each target φ recovers, against pixels and the untrained network."""
    panels = [(f"k-means, k = {k}", "AMI (0: chance)",
               (table.method == "k-means") & (table.k == k) & (table.metric == "ami"))
              for k in sorted(table.k.dropna().unique())]
    panels.append(("linear probe", "test accuracy (0–1)", table.method == "linear probe"))
    names = feature_order(table.features.unique())
    colours = feature_colours(names)
    fig, axes = plt.subplots(len(panels), 1, figsize=(COLUMN, 0.7 + 1.3 * len(panels)), sharex=True, squeeze=False)
    targets = list(dict.fromkeys(table.target))
    width = 0.8 / len(names)
    for ax, (title, ylabel, rows) in zip(axes[:, 0], panels):
        values = table[rows.to_numpy()].pivot_table(index="target", columns="features", values="value").reindex(targets)
        for i, name in enumerate(names):
            ax.bar(np.arange(len(targets)) + (i - (len(names) - 1) / 2) * width, values.get(name), width,
                   color=colours[name], label=feature_set_name(name))
        ax.set(title=title, ylabel=ylabel, ylim=(min(0, np.nanmin(values.to_numpy(), initial=0)), 1))
        ax.axhline(0, color="k", lw=0.5)
    axes[-1, 0].set_xticks(range(len(targets)), targets, rotation=40, ha="right", rotation_mode="anchor")
    axes[-1, 0].set_xlabel("target: the label or a scene factor")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center", ncol=min(3, len(names)))
    save(fig, path)


def semantic_scores_summary(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The semantic scores to read at a glance: a table per measure (k-means AMI at each k, linear-probe
    accuracy), a row per target, a column per feature set, φ first."""
    sections = [(f"k-means, k = {k}: AMI with each target (0: chance, 1: the same partition)",
                 (table.method == "k-means") & (table.k == k) & (table.metric == "ami"))
                for k in sorted(table.k.dropna().unique())]
    sections.append(("Linear probe: test accuracy per target", table.method == "linear probe"))
    tables = []
    for heading, rows in sections:
        values = table[rows.to_numpy()].pivot_table(index="target", columns="features", values="value", sort=False)
        values = values[feature_order(values.columns)].rename(columns=feature_set_name)
        tables.append((heading, values.rename_axis(index=None, columns=None)))
    return tables


def sample_phi_error(table: pd.DataFrame, path: str) -> None:
    """Per target, the relative φ error of self-guided against unconditional samples (top); the guided
    samples' matching error along their σ schedule (bottom)."""
    fig, (ax_error, ax_schedule) = plt.subplots(2, 1, figsize=(COLUMN, 3.8))
    for offset, (method, rows) in zip((-0.12, 0.12), table.groupby("method", sort=False)):
        ax_error.scatter(rows.target + offset, rows.phi_error, s=8, label=method)
    ax_error.set(xlabel="target (conditioning image)", ylabel="relative φ error (log)", yscale="log",
                 title=f"‖φ(x̂) − φ*‖ / ‖φ*‖ at σ = {table.score_sigma.iloc[0]:g}")
    ax_error.set_xticks(sorted(table.target.unique()))
    _log_axis(ax_error.yaxis)
    ax_error.legend(title="samples")
    guided = table[table.method == "self-guided"]
    for sigma, error in zip(guided.schedule_sigma, guided.schedule_phi_error):
        ax_schedule.plot(sigma, error, lw=0.7, alpha=0.6, color="tab:blue")
    ax_schedule.set(xlabel=f"σ {SIGMA}", ylabel="relative φ error (log)", yscale="log",
                    title="Self-guided: error along the σ schedule")
    _log_axis(ax_schedule.yaxis)
    ax_schedule.invert_xaxis()
    save(fig, path)


def cluster_samples(clusters: list[tuple[str, list, list]], path: str, title: str) -> None:
    """One row per k-means cluster, given as (row title, member images, sample images): its members closest
    to the centroid, a gap, then the samples drawn toward the centroid."""
    members, samples = (max(len(row[i]) for row in clusters) for i in (1, 2))
    rows = [(name, [*shown, *[None] * (members - len(shown)), None, *drawn]) for name, shown, drawn in clusters]
    columns = ["closest", *[""] * (members - 1), "", "samples", *[""] * (samples - 1)]
    montage(rows, path, columns=columns, title=title)


def emergence(table: pd.DataFrame, pixels: pd.DataFrame, path: str) -> None:
    """Each emergence measure against the training step (semcore.emergence; step 0: the untrained
    network), the pixels' score as a dashed line of the same colour: the denoiser's test PSNR, φ's mean PR,
    k-means AMI at the largest k and the linear probe, per target, at the first clustered σ."""
    steps = sorted(table.step.unique())
    sigma = table[table.method == "φ"].sigma.min()
    k = table.k.max()
    targets = list(dict.fromkeys(table[table.method == "linear probe"].target))  # the label, categorical factors
    colours = dict(zip(targets, _colours(len(targets))))
    fig, axes = plt.subplots(2, 2, figsize=(COLUMN, 3.6), sharex=True)
    panels = [("denoiser", "test PSNR (dB)", "Denoising"), ("φ", "mean PR of φ (0–1)", "Sparsity of φ"),
              ("k-means", "AMI (0: chance)", f"k-means, k = {k}"),
              ("linear probe", "test accuracy (0–1)", "Linear probe")]
    linthresh = max(1, min([s for s in steps if s > 0], default=1))
    for ax, (method, ylabel, title) in zip(axes.flat, panels):
        rows = table[table.method == method]
        if method == "denoiser":
            noise_levels = rows.groupby("sigma")
            shades = plt.cm.Purples(np.linspace(0.9, 0.5, noise_levels.ngroups))  # not the targets' colours
            for (s, line), colour in zip(noise_levels, shades):
                ax.plot(line.step, line.value, "o-", color=colour, label=f"σ = {s:g}")
            ax.legend(loc="lower right", title="noise")
        elif method == "φ":
            line = rows[rows.sigma == sigma]
            ax.plot(line.step, line.value, "o-", color="0.25")
        else:
            metric = "ami" if method == "k-means" else "probe accuracy"
            rows = rows[(rows.sigma == sigma) & (rows.metric == metric) & (rows.k.isna() | (rows.k == k))]
            base = pixels[(pixels.method == method) & (pixels.metric == metric) & (pixels.k.isna() | (pixels.k == k))]
            for target in targets:
                line = rows[rows.target == target]
                ax.plot(line.step, line.value, "o-", color=colours[target], label=target)
                ax.axhline(base[base.target == target].value.mean(), color=colours[target], ls="--", lw=0.8)
        ax.set(title=title, ylabel=ylabel)
        ax.set_xscale("symlog", linthresh=linthresh)
        if len(steps) <= 6:  # the steps analysed, where they fit; else the decades
            ax.set_xticks(steps)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))  # 100, not 10²
        ax.set_xlim(-0.3 * linthresh, 1.5 * max(steps[-1], linthresh))
    for ax in axes[-1]:
        ax.set_xlabel(f"{STEP} (symlog)")
    handles = [Line2D([], [], color=colours[t], marker="o", label=t) for t in targets]
    handles.append(Line2D([], [], color="k", ls="--", lw=0.8, label="pixels"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), title="target (φ at σ = "
               f"{sigma:g}; dashed: pixels)")
    fig.suptitle("Emergence over training (step 0: the untrained network)")
    save(fig, path)


def skip_kind(manifest: pd.DataFrame) -> pd.Series:
    """Each row's status for counting: "written", or "skipped: <the reason's kind>" (the reason before its
    first ": "; "duplicate" for a copy of an earlier input)."""
    kind = manifest.reason.fillna("").str.split(": ", n=1).str[0].where(manifest.duplicate_of.isna(), "duplicate")
    return ("skipped: " + kind).where(manifest.status == "skipped", "written")


def data_overview(manifest: pd.DataFrame, images: dict, path: str, labels: int = 8, examples: int = 6) -> None:
    """What the run was given: `examples` written images (dict key → image) of each of the first `labels`
    labels, a row per label named on its left with its count; below, the inputs counted by status
    (written, or skipped and why) and split."""
    written = manifest[manifest.status == "written"]
    counts = written.label.value_counts()
    shown = sorted(counts.index)[:labels]
    rows = []
    for label in shown:
        members = written[written.label == label]
        name = members.label_name.iloc[0] or f"label {label}"
        rows.append((f"{name}\n{counts[label]} images", [images[k] for k in members.key[:examples] if k in images]))
    table = skip_kind(manifest).to_frame("status").assign(split=manifest.split.fillna("none")).value_counts()
    table = table.unstack("split", fill_value=0)
    table = table[sorted(table.columns, key=lambda split: {"train": 0, "test": 1}.get(split, 2))]
    total = table.sum(axis=1)
    table = table.reindex(sorted(table.index, key=lambda s: (s != "written", -total[s]))[:8])  # the commonest skips
    cell, width = _montage_size(rows)
    heading, gap, bars_height, bottom = 0.22, 0.35, 0.2 + 0.36 * len(table), 0.42
    height = heading + len(rows) * cell + gap + bars_height + bottom
    fig = plt.figure(figsize=(max(width, COLUMN), height), layout="none")
    title = f"Examples of {len(shown)} of {len(counts)} labels" if len(shown) < len(counts) else "Examples per label"
    fig.suptitle(f"{title} (written images)", y=1 - 0.04 / height, va="top")
    _image_rows(fig, heading, rows, None, None, cell)
    # Below the images: a bar per status, stacked by split, the counts in its name.
    left = 1.3
    ax = fig.add_axes([left / COLUMN, bottom / height, (COLUMN - left - 0.15) / COLUMN, bars_height / height])
    start = np.zeros(len(table))
    for split, colour in zip(table.columns, _colours(len(table.columns))):
        ax.barh(range(len(table)), table[split], 0.6, left=start, color=colour, label=split)
        start += table[split].to_numpy()
    names = [f"{wrap(status, 26)}\n" + " + ".join(f"{n} {split}" for split, n in row.items() if n)
             for status, row in table.iterrows()]
    ax.set_yticks(range(len(table)), names)
    ax.invert_yaxis()
    ax.set_xlabel("inputs")
    # The heading from the left edge, the splits' key above the bars' right end: neither covers a bar.
    fig.text(0.1 / COLUMN, (bottom + bars_height + 0.06) / height, f"{len(manifest)} inputs: {len(written)} written, "
             f"{len(manifest) - len(written)} skipped", ha="left", va="bottom", fontsize=7.5)
    ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncol=len(table.columns), borderaxespad=0.1)
    save(fig, path)


TABLE_STYLE = """<style>
body { font-family: sans-serif; font-size: 14px; margin: 8px; }
table { border-collapse: collapse; margin-bottom: 18px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td { text-align: right; }
</style>"""


def html_tables(sections: list[tuple[str, pd.DataFrame]], path: str) -> None:
    """Tables, each under its heading, as one page styled to read in the Snakemake report (which shows
    HTML in a frame; a CSV there is only a download)."""
    body = "\n".join(f"<h4>{html.escape(heading)}</h4>\n" + table.to_html(float_format=lambda v: f"{v:.3g}",
                                                                           border=0, na_rep="–")
                     for heading, table in sections)
    with atomic(path) as tmp:
        tmp.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'>{TABLE_STYLE}</head><body>\n{body}\n"
                       "</body></html>\n")


GIST_MEASURES = {"guided": "self-guided", "unconditional": "unconditional (chance)",
                 "real_same_class": "real, same class", "conditioner": "conditioner"}


def gist_summary(agreement: pd.DataFrame, quality: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The gist scores to read at a glance: per classifier head, the share of each sample set predicted
    as the conditioner's class (over targets); the KID of each set against real test images."""
    overall = agreement[agreement.target.isna()].pivot_table(index="head", columns="measure", values="value",
                                                             sort=False)
    overall = overall[[m for m in GIST_MEASURES if m in overall]].rename(columns=GIST_MEASURES)
    kid = quality.set_index("set")[["n", "n_real", "kid", "kid_std"]].rename(
        columns={"n": "images", "n_real": "real images", "kid": "KID", "kid_std": "std over subsets"})
    overall, kid = (table.rename_axis(index=None, columns=None) for table in (overall, kid))
    return [("Agreement with the conditioner's class, mean over targets", overall),
            ("KID against real test images (classifier features; lower: closer)", kid)]


def grid(rows: list[list[np.ndarray | None]], scale: int = 1, gap: int = 2) -> np.ndarray:
    """Images (H×W×C uint8, or None for an empty cell) laid out row by row on a white canvas, each
    enlarged `scale`× (nearest neighbour, so pixels stay visible): e.g. a sampling target's grid."""
    first = next(image for row in rows for image in row if image is not None)
    h, w, c = first.shape
    cell_h, cell_w = h * scale + gap, w * scale + gap
    canvas = np.full((len(rows) * cell_h + gap, max(map(len, rows)) * cell_w + gap, c), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            if image is not None:
                big = image.repeat(scale, axis=0).repeat(scale, axis=1)
                canvas[gap + i * cell_h:gap + i * cell_h + h * scale, gap + j * cell_w:gap + j * cell_w + w * scale] = big
    return canvas
