"""The samplers' step arithmetic: how many steps an ascent takes by design, its step size, the presets.

Plain arithmetic on the config's sample section: the rules check and plan with it, semcore.sample runs it.
"""

from __future__ import annotations

import math

# Sampling. With max_steps null a sample whose σ estimate never falls below sigma_final (a denoiser that
# misjudges its noise) still stops: after this many times the designed step count.
STEP_CAP_FACTOR = 3

# The authors' unconditional baseline (22_representation_in_UNet_denoiser, generate_samples_unconditional.py).
AUTHORS_UNCONDITIONAL = dict(sigma_0=3.0, sigma_final=0.04, h0=0.01, beta=0.05, h_schedule=False, max_steps=20000,
                             start="grey")


def step_size(h0: float, t: int, schedule: bool) -> float:
    """The ascent's step t: h0 (the authors' default), or h_t = h0·t / (1 + h0·(t − 1)), small while σ is
    large and → 1 as the image emerges."""
    return h0 * t / (1 + h0 * (t - 1)) if schedule else h0


def designed_steps(ascent: dict) -> int:
    """Score steps the ascent takes by design: step t sees σ_t = σ_0 Π_{s<t} (1 − β h_s) (each step is
    designed to leave (1 − β h_s) of its noise), and the first with σ_t < sigma_final is the last."""
    sigma_0, sigma_final, h0, beta = (ascent[key] for key in ("sigma_0", "sigma_final", "h0", "beta"))
    if not ascent["h_schedule"]:  # σ_0 (1 − β h0)^(t − 1) < sigma_final, solved for t (tens of thousands)
        return max(1, math.floor(math.log(sigma_final / sigma_0) / math.log1p(-beta * h0)) + 2)
    t, sigma = 1, sigma_0
    while sigma >= sigma_final:
        sigma *= 1 - beta * step_size(h0, t, True)
        t += 1
    return t


def sampler_final_sigma(sample: dict) -> float:
    """The σ the guided sampler ends at (the config's sample section): samples are scored there."""
    return sample["schedule"]["sigma_min"] if sample["algorithm"] == "fixed" else sample["ascent"]["sigma_final"]


def resolved_ascent(ascent: dict) -> dict:
    """Ascent settings with max_steps null replaced by its cap, STEP_CAP_FACTOR × the designed count."""
    return {**ascent, "max_steps": ascent["max_steps"] or STEP_CAP_FACTOR * designed_steps(ascent)}


def unconditional_sampler(sample: dict) -> tuple[str, dict]:
    """sample.unconditional resolved: (its start, its ascent settings). A preset name, or an object whose
    missing keys come from the authors' preset."""
    chosen = sample["unconditional"]
    if chosen == "ascent":
        settings = {**sample["ascent"], "start": sample["start"]}
    else:
        settings = {**AUTHORS_UNCONDITIONAL, **(chosen if isinstance(chosen, dict) else {})}
    start = settings.pop("start")
    return start, resolved_ascent(settings)

