"""Figures of the pipeline's outputs (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from semcore.files import atomic  # noqa: E402


def training_curve(log: pd.DataFrame, path: str) -> None:
    """Loss against step, and test PSNR of the denoised against the noisy input at each eval σ (an imported
    network has no loss: its panel says so)."""
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    steps = log[log.kind == "train"]
    if len(steps):
        ax_loss.plot(steps.step, steps.loss, lw=1)
        ax_loss.set(yscale="log")
    else:
        imported = log[log.kind == "import"].iloc[0]
        ax_loss.text(0.5, 0.5, f"imported ({imported.format} format),\nnot trained here", ha="center", va="center",
                     transform=ax_loss.transAxes)
    ax_loss.set(xlabel="step", ylabel="loss (Σ squared error per image)", title="training loss")
    evals = log[log.kind == "eval"]
    for (sigma, rows), colour in zip(evals.groupby("sigma"), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        ax_psnr.plot(rows.step, rows.psnr_denoised, "o-", color=colour, label=f"denoised, σ={sigma:g}")
        ax_psnr.axhline(rows.psnr_noisy.iloc[-1], color=colour, ls="--", lw=1, label=f"noisy input, σ={sigma:g}")
    ax_psnr.set(xlabel="step", ylabel="test PSNR (dB)", title="denoising on the test split")
    ax_psnr.legend(fontsize=8)
    save(fig, path)


def _panels(n: int, width: float = 2.6, height: float = 2.4):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), constrained_layout=True, squeeze=False)
    return fig, axes[0]


def save(fig, path: str, dpi: int = 120) -> None:
    with atomic(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix[1:])
    plt.close(fig)


def block_pr_histograms(table: pd.DataFrame, sigma: float, path: str) -> None:
    """Per block, the histogram of per-image participation ratios (paper fig. 1)."""
    blocks = list(dict.fromkeys(table.block))
    fig, axes = _panels(len(blocks))
    for ax, block in zip(axes, blocks):
        pr = table[table.block == block].pr.dropna()
        ax.hist(pr, bins=30, range=(0, 1), color="tab:green" if block == "M" else "tab:blue")
        ax.set(title=f"{block}: mean PR {pr.mean():.2f}", xlabel="participation ratio", xlim=(0, 1))
    axes[0].set_ylabel("images")
    fig.suptitle(f"Sparsity of the channel means ā per block (σ = {sigma:g})")
    save(fig, path)


def stability_curves(table: pd.DataFrame, sigma1: float, path: str) -> None:
    """Mean cosine similarity of ā(x_σ1) and ā(x_σ2) against σ2, one line per block (paper fig. 2)."""
    fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    for block, rows in table.groupby("block", sort=False):
        curve = rows.groupby("sigma").cosine.mean()
        ax.plot(curve.index, curve.to_numpy(), "o-", lw=2.5 if block == "M" else 1.2, label=block)
    ax.set(xlabel="σ2", ylabel=f"cos(ā(x_σ1), ā(x_σ2)), σ1 = {sigma1:g}", title="Stability across noise levels")
    ax.legend(fontsize=8)
    save(fig, path)


def channel_pr_histogram(table: pd.DataFrame, threshold: float, path: str) -> None:
    """The distribution of per-channel PR across images with the selective / non-selective split (fig. 3)."""
    fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    pr = table.pr.dropna()
    ax.hist([pr[pr < threshold], pr[pr >= threshold]], bins=30, range=(0, 1), stacked=True,
            color=["tab:orange", "tab:gray"], label=[f"selective ({(pr < threshold).sum()})",
                                                     f"non-selective ({(pr >= threshold).sum()})"])
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.set(xlabel="participation ratio of a channel across images", ylabel="channels",
           title=f"Channel selectivity (threshold {threshold:.2f})")
    ax.legend(fontsize=8)
    save(fig, path)


def _note(text: str, path: str) -> None:
    """A figure that says why there is nothing to plot."""
    fig, ax = plt.subplots(figsize=(5, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    save(fig, path)


def montage(rows: list[tuple[str, list]], path: str) -> None:
    """One row of images per title: e.g. the images that activate a channel most."""
    if not rows:
        return _note("no channel to show", path)
    columns = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.2 * columns + 1.5, 1.25 * len(rows)), squeeze=False)
    for (title, images), line in zip(rows, axes):
        for ax in line:
            ax.axis("off")
        for ax, image in zip(line, images):
            ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
        line[0].set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    save(fig, path)


def subspace_comparison(groups: pd.DataFrame, pairs: pd.DataFrame, path: str) -> None:
    """Effective dimension per group and principal angles between groups, real against shuffled (fig. 5)."""
    if groups.empty:
        return _note("fewer than two groups of images share active selective channels\n"
                     "(lower stats.min_group_size or stats.active_fraction)", path)
    fig, (ax_dim, ax_angle) = _panels(2, width=4.0, height=3.2)
    kinds = ["active channels", "shuffled"]
    ax_dim.boxplot([groups[groups.kind == k].pr_dimension for k in kinds], tick_labels=kinds)
    ax_dim.set(ylabel="participation dimension of φ", title="dimension per group")
    ax_angle.boxplot([pairs[pairs.kind == k].mean_angle for k in kinds], tick_labels=kinds)
    ax_angle.set(ylabel="mean principal angle (°)", title="angle between groups")
    save(fig, path)


def factor_heatmap(table: pd.DataFrame, path: str, top: int = 20) -> None:
    """Mutual information of channels (the `top` most informative) with each ground-truth factor."""
    matrix = table.pivot(index="factor", columns="channel", values="mutual_information")
    matrix = matrix[matrix.max().sort_values(ascending=False).index[:top]]
    fig, ax = plt.subplots(figsize=(0.35 * matrix.shape[1] + 2.5, 0.35 * len(matrix) + 1.5), constrained_layout=True)
    image = ax.imshow(matrix.to_numpy(), cmap="viridis", aspect="auto")
    ax.set(xticks=range(matrix.shape[1]), xticklabels=matrix.columns, yticks=range(len(matrix)),
           yticklabels=matrix.index, xlabel="channel", title="Mutual information (nats): channel ↔ factor")
    ax.tick_params(axis="x", labelsize=7)
    fig.colorbar(image, ax=ax)
    save(fig, path)


def semantic_scores(table: pd.DataFrame, path: str) -> None:
    """NMI of the k-means clusters at each k and the linear-probe accuracy, per target, one bar per
    feature set: how much of each target φ recovers, against pixels and the untrained network."""
    panels = [(f"k-means, k={k}: NMI", (table.method == "k-means") & (table.k == k) & (table.metric == "nmi"))
              for k in sorted(table.k.dropna().unique())]
    panels.append(("linear probe: test accuracy", table.method == "linear probe"))
    fig, axes = _panels(len(panels), width=4.2, height=3.4)
    for ax, (title, rows) in zip(axes, panels):
        matrix = table[rows.to_numpy()].pivot(index="target", columns="features", values="value")
        matrix.plot.bar(ax=ax, rot=45, width=0.8, legend=ax is axes[-1])
        ax.set(title=title, xlabel="", ylim=(0, 1))
    axes[-1].legend(fontsize=7, title="features", title_fontsize=7)
    save(fig, path)


def sample_phi_error(table: pd.DataFrame, path: str) -> None:
    """Per target, the relative φ error of self-guided against unconditional samples; and the guided
    samples' matching error along their σ schedule."""
    fig, (ax_error, ax_schedule) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for offset, (method, rows) in zip((-0.15, 0.15), table.groupby("method", sort=False)):
        ax_error.scatter(rows.target + offset, rows.phi_error, s=14, label=method)
    ax_error.set(xlabel="target", ylabel="‖φ(x̂) − φ*‖ / ‖φ*‖", yscale="log",
                 title=f"φ error at σ = {table.score_sigma.iloc[0]:g}")
    ax_error.set_xticks(sorted(table.target.unique()))
    ax_error.legend(fontsize=8)
    guided = table[table.method == "self-guided"]
    for sigma, error in zip(guided.schedule_sigma, guided.schedule_phi_error):
        ax_schedule.plot(sigma, error, lw=0.8, alpha=0.6, color="tab:blue")
    ax_schedule.set(xlabel="σ", ylabel="relative φ error after matching", yscale="log",
                    title="self-guided: matching along the schedule")
    ax_schedule.invert_xaxis()
    save(fig, path)


def emergence(table: pd.DataFrame, pixels: pd.DataFrame, path: str) -> None:
    """Each emergence measure against the training step (semcore.emergence; step 0: the untrained
    network), the pixels' score as a dashed line of the same colour: the denoiser's test PSNR, φ's mean PR,
    k-means AMI at the largest k and the linear probe, per target, at the first clustered σ."""
    steps = sorted(table.step.unique())
    sigma = table[table.method == "φ"].sigma.min()
    k = table.k.max()
    targets = list(dict.fromkeys(table[table.method == "linear probe"].target))  # the label, categorical factors
    colours = dict(zip(targets, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = _panels(4, width=3.2, height=2.9)
    panels = [("denoiser", "test PSNR (dB)", "denoising"), ("φ", "mean participation ratio", f"sparsity of φ (σ={sigma:g})"),
              ("k-means", "AMI", f"k-means, k={k} (σ={sigma:g})"), ("linear probe", "test accuracy", f"linear probe (σ={sigma:g})")]
    for ax, (method, ylabel, title) in zip(axes, panels):
        rows = table[table.method == method]
        if method == "denoiser":
            for s, line in rows.groupby("sigma"):
                ax.plot(line.step, line.value, "o-", ms=3, label=f"noise σ={s:g}")
        elif method == "φ":
            line = rows[rows.sigma == sigma]
            ax.plot(line.step, line.value, "o-", ms=3, color="tab:green", label="φ")
        else:
            metric = "ami" if method == "k-means" else "probe accuracy"
            rows = rows[(rows.sigma == sigma) & (rows.metric == metric) & (rows.k.isna() | (rows.k == k))]
            base = pixels[(pixels.method == method) & (pixels.metric == metric) & (pixels.k.isna() | (pixels.k == k))]
            for target in targets:
                line = rows[rows.target == target]
                ax.plot(line.step, line.value, "o-", ms=3, color=colours[target], label=target)
                ax.axhline(base[base.target == target].value.mean(), color=colours[target], ls="--", lw=1)
        linthresh = max(1, min([s for s in steps if s > 0], default=1))
        ax.set(title=title, xlabel="training step (symlog)", ylabel=ylabel)
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xlim(-0.3 * linthresh, 1.5 * max(steps[-1], linthresh))
        ax.legend(fontsize=6)
    axes[2].text(0.98, 0.02, "dashed: pixels", transform=axes[2].transAxes, ha="right", fontsize=6)
    fig.suptitle("Emergence over training (step 0: the untrained network)")
    save(fig, path)
