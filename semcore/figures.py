"""Figures of the pipeline's outputs (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def training_curve(log: pd.DataFrame, path: str) -> None:
    """Loss against step, and test PSNR of the denoised against the noisy input at each eval σ."""
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    steps = log[log.kind == "train"]
    ax_loss.plot(steps.step, steps.loss, lw=1)
    ax_loss.set(xlabel="step", ylabel="loss (Σ squared error per image)", yscale="log", title="training loss")
    evals = log[log.kind == "eval"]
    for (sigma, rows), colour in zip(evals.groupby("sigma"), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        ax_psnr.plot(rows.step, rows.psnr_denoised, "o-", color=colour, label=f"denoised, σ={sigma:g}")
        ax_psnr.axhline(rows.psnr_noisy.iloc[-1], color=colour, ls="--", lw=1, label=f"noisy input, σ={sigma:g}")
    ax_psnr.set(xlabel="step", ylabel="test PSNR (dB)", title="denoising on the test split")
    ax_psnr.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
