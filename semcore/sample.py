"""Self-guided stochastic reconstruction: drawing images whose representation φ matches a target, with
the unconditional denoiser alone (the paper's section 6), and the unconditional sampler it builds on.

Three samplers, batched over rows (targets × samples per target), each row stopping on its own:
- `ascent`: stochastic coarse-to-fine gradient ascent (Kadkhodaie & Simoncelli 2021). f(y) = y − x̂(y),
  σ_t = ‖f(y_t)‖/√N, y_{t+1} = y_t − h_t f(y_t) + γ_t z, until σ_t < σ_final. Without a target it is the
  unconditional sampler; with one it is the adaptive self-guided sampler (a matching step before each
  score step, φ* at the σ the previous step was designed to leave). A row the step cap stops before
  σ_final is flagged.
- `fixed_schedule`: σ_k from σ_max to σ_min; y = x + σ_k z; matching step; x ← x̂(y) (the paper's figures).
- `match_phi`: the matching step: Adam on the pixels of y (network frozen) minimising
  mean_c (ā_mid(y) − φ*)², until the loss is below `tol` × its start or `max_iter` steps.

Every row draws its own φ* (its own noise on the conditioner), as in the authors' code.

A row whose image or denoised image becomes NaN/inf (a diverging matching step, a non-finite φ*, the
network) stops before that step with its last finite image (the start image if its first step failed);
the others go on. It is logged, and flagged in the score table (`failed`, `failure`: the step and the σ it
was designed for), as rows stopped by the step cap are (`reached_sigma_final`).

Every network call is counted in a `Counter` keyed by (kind, batch size), so that a benchmark can time
the same calls alone.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from semcore.config import default, designed_steps, step_size
from semcore.model import UNetFlex
from semcore.phi import noise_averaged_means, read_phi
from semcore.progress import progress

log = logging.getLogger(__name__)

# Adam's constants (torch's defaults; the authors use torch.optim.Adam).
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8

# Finished rows leave a batch in steps, not one by one: each new batch size costs a kernel set-up on the
# CPU (measured: a first fwd+bwd on a new shape ~10x a repeated one). A batch shrinks to the smallest size
# on one fixed ladder, ceil((4/3)^k) (…, 10, 14, 18, 24, 32, 43, …), that holds its running rows, padded
# with finished ones: a run meets few distinct shapes and computes at most ~a third more rows than needed.
SHRINK = 0.75


def _shrunk(running: torch.Tensor) -> torch.Tensor | None:
    """The batch positions to keep (the running rows, padded with finished ones up to a ladder size),
    or None when no smaller ladder size holds the running rows."""
    count, k, size = int(running.sum()), 0, 1
    while size < count:
        k += 1
        size = math.ceil((1 / SHRINK) ** k)
    if size >= len(running):
        return None
    return torch.argsort(~running, stable=True)[:size].sort().values  # running rows first, order kept


@dataclass
class Matching:
    """The matching step's settings: Adam learning rate (pixels in [0, 1]), relative tolerance, cap."""
    lr: float = default("sample.matching.lr")
    tol: float = default("sample.matching.tol")
    max_iter: int = default("sample.matching.max_iter")


@dataclass
class Target:
    """φ* per target: from conditioning images (noise-averaged ā_mid at the requested σ) or fixed
    vectors (e.g. cluster centroids, the same at every σ); optionally only its `top_k` largest channels."""
    images: torch.Tensor | None = None  # [T, C, H, W] in [0, 1]
    vectors: torch.Tensor | None = None  # [T, channels]
    n_noise: int = default("sample.n_noise")
    top_k: int | None = default("sample.top_k")

    def __post_init__(self):
        if (self.images is None) == (self.vectors is None):
            raise ValueError("a Target needs either conditioning images or φ vectors")

    def __len__(self) -> int:
        return len(self.images if self.images is not None else self.vectors)

    @torch.no_grad()
    def phi(self, model: UNetFlex, index: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator,
            calls: Counter) -> torch.Tensor:
        """φ* [R, channels] of targets `index` [R] at per-row noise levels `sigma` [R]."""
        if self.vectors is not None:
            phi = self.vectors[index]
        else:
            noisy = self.images[index].repeat_interleave(self.n_noise, dim=0)
            noisy = noisy + sigma.repeat_interleave(self.n_noise).view(-1, 1, 1, 1) * torch.randn(
                noisy.shape, generator=generator, device=noisy.device)
            calls["phi", len(noisy)] += 1
            phi = model.middle_means(noisy).view(len(index), self.n_noise, -1).mean(dim=1)
        return top_k_mask(phi, self.top_k)


def top_k_mask(phi: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the k largest channels of each row, zero the others (the authors' masked target)."""
    if k is None or k >= phi.shape[1]:
        return phi
    top = phi.topk(k, dim=1)
    return torch.zeros_like(phi).scatter_(1, top.indices, top.values)


def relative_error(phi: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖φ − φ*‖ / ‖φ*‖ per row."""
    return (phi - target).norm(dim=1) / target.norm(dim=1).clamp_min(1e-12)


@torch.enable_grad()
def match_phi(model: UNetFlex, y: torch.Tensor, target: torch.Tensor, matching: Matching, calls: Counter,
              running: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The matching step on the rows of y [R, C, H, W] toward φ* [R, channels] (those of `running`, if
    given; the others are returned as they are).

    Returns (matched y, relative φ error of each row at its final y, Adam steps taken per row). A row
    finishes when its loss falls below `tol` × its start, or after `max_iter` steps; finished rows leave
    the batch (see SHRINK). Rows are independent (per-row losses, summed; an eval-mode network), so a
    row's trajectory does not depend on the batch it is in.
    """
    y = y.detach().clone()
    rows = torch.arange(len(y), device=y.device)
    running = torch.ones(len(y), dtype=torch.bool, device=y.device) if running is None else running.clone()
    error = torch.full((len(y),), float("nan"), device=y.device)
    steps = torch.zeros(len(y), dtype=torch.long, device=y.device)
    active, goal = y.clone(), target  # y is written as rows finish: active must not share its storage
    m, v = torch.zeros_like(active), torch.zeros_like(active)
    threshold = None
    for it in range(matching.max_iter + 1 if running.any() else 0):
        active = active.detach().requires_grad_(True)
        phi = model.middle_means(active)
        loss = (phi - goal).square().mean(dim=1)
        calls["phi_grad", len(active)] += 1
        if threshold is None:
            threshold = matching.tol * loss.detach()
        error[rows[running]] = relative_error(phi.detach(), goal)[running]
        finishing = running & (loss.detach() <= threshold) if it < matching.max_iter else running
        if finishing.any():
            y[rows[finishing]] = active.detach()[finishing]
            running = running & ~finishing
            if not running.any():
                break
        (grad,) = torch.autograd.grad(loss.sum(), active)
        calls["phi_grad_backward", len(active)] += 1
        active = active.detach()
        keep = _shrunk(running)
        if keep is not None:
            rows, goal, threshold, active, grad, m, v, running = (
                t[keep] for t in (rows, goal, threshold, active, grad, m, v, running))
        # Adam (every row of the batch at the same step count, so one bias correction).
        m.lerp_(grad, 1 - BETA1)
        v.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
        m_hat, v_hat = m / (1 - BETA1 ** (it + 1)), v / (1 - BETA2 ** (it + 1))
        active = active - matching.lr * m_hat / (v_hat.sqrt() + EPS)
        steps[rows[running]] += 1
    return y, error, steps


@dataclass
class Samples:
    """A sampler's output: images [R, C, H, W] in [0, 1], and per row its trajectory."""
    images: torch.Tensor
    steps: torch.Tensor  # score (denoising) steps per row
    matching_steps: torch.Tensor  # Adam steps per row, summed over the schedule
    sigma: np.ndarray  # [R, S] σ at each step (NaN once a row has stopped)
    phi_error: np.ndarray  # [R, S] relative φ error after each matching step (NaN without a target)
    reached: torch.Tensor  # per row: its σ fell to the sampler's final σ (False: stopped by the step cap, or failed)
    failed_step: torch.Tensor  # per row: the step at which it became NaN/inf, and stopped before (0: never)
    failed_sigma: torch.Tensor  # per row: the σ that step was designed for (NaN: never failed)
    calls: Counter = field(default_factory=Counter)


def _log_failures(rows: torch.Tensor, failed_step: torch.Tensor, failed_sigma: torch.Tensor) -> None:
    """One warning naming every row that became NaN/inf, with its target, step and σ."""
    failed = torch.nonzero(failed_step).flatten().tolist()
    if failed:
        log.warning("%d of %d samples became NaN/inf and stopped with their last finite image: %s", len(failed),
                    len(rows), "; ".join(f"row {i} (target {int(rows[i])}) at step {int(failed_step[i])}, "
                                         f"σ {float(failed_sigma[i]):.3g}" for i in failed))


@torch.no_grad()
def fixed_schedule(model: UNetFlex, target: Target, rows: torch.Tensor, start: torch.Tensor, sigmas: list[float],
                   matching: Matching, generator: torch.Generator) -> Samples:
    """Self-guided sampling on a fixed σ schedule: rows[i] is the target of row i; start [C, H, W] the
    initial image; each row draws its own φ* at every σ. A row that becomes NaN/inf keeps its last finite
    image; its σ and φ error are NaN from that step on."""
    calls = Counter()
    x = start.expand(len(rows), *start.shape).contiguous(memory_format=torch.channels_last)
    errors, matching_steps = [], torch.zeros(len(rows), dtype=torch.long, device=x.device)
    failed_step = torch.zeros(len(rows), dtype=torch.long, device=x.device)
    for k, sigma in enumerate(progress(sigmas, desc="sampling on a fixed schedule", unit="steps"), 1):
        goal = target.phi(model, rows, torch.full((len(rows),), sigma, device=x.device), generator, calls)
        y = x + sigma * torch.randn(x.shape, generator=generator, device=x.device)
        y, error, steps = match_phi(model, y, goal, matching, calls)
        errors.append(error)
        matching_steps += torch.where(failed_step == 0, steps, 0)
        denoised = model(y)
        calls["denoise", len(y)] += 1
        # NaN/inf in the matched or the denoised image: the row keeps its last finite image from now on
        failed_step.masked_fill_((failed_step == 0) & ~torch.isfinite(denoised.flatten(1)).all(dim=1), k)
        x = torch.where((failed_step == 0).view(-1, 1, 1, 1), denoised, x)
    completed = torch.where(failed_step > 0, failed_step - 1, len(sigmas))
    stopped = np.arange(len(sigmas)) >= completed.cpu().numpy()[:, None]
    schedule = np.tile(np.asarray(sigmas, dtype=np.float64), (len(rows), 1))
    failed_sigma = torch.tensor([np.nan, *sigmas], device=x.device)[failed_step]  # step 0: never failed
    _log_failures(rows, failed_step, failed_sigma)
    return Samples(images=x.clamp(0, 1), steps=completed, matching_steps=matching_steps,
                   sigma=np.where(stopped, np.nan, schedule),
                   phi_error=np.where(stopped, np.nan, torch.stack(errors, dim=1).cpu().double().numpy()),
                   reached=failed_step == 0, failed_step=failed_step, failed_sigma=failed_sigma, calls=calls)


@torch.no_grad()
def ascent(model: UNetFlex, rows: torch.Tensor, start: torch.Tensor, *, sigma_0: float, sigma_final: float,
           h0: float, beta: float, h_schedule: bool, max_steps: int, generator: torch.Generator,
           target: Target | None = None, matching: Matching | None = None) -> Samples:
    """Stochastic coarse-to-fine ascent from start + σ_0 z; with a target, the adaptive self-guided
    sampler. A row stops once its σ_t < sigma_final and returns x̂(y_t); one still above after max_steps
    stops there too, flagged (Samples.reached) and logged; one whose σ_t is not finite (NaN/inf in y_t or
    x̂(y_t)) stops before step t with its last finite x̂, flagged (Samples.failed_step) and logged.

    The matching step's φ* is taken at the σ this step is expected to see: σ_0 first, then
    (1 − β h_t) σ_t, the noise level the ascent step is designed to leave (the authors re-estimate σ
    after the step with a second network call).
    """
    calls = Counter()
    n = start.numel()
    y = (start + sigma_0 * torch.randn((len(rows), *start.shape), generator=generator, device=start.device))
    y = y.contiguous(memory_format=torch.channels_last)
    images = start.expand_as(y).clone(memory_format=torch.channels_last)  # a row failing at once keeps it
    expected_sigma = torch.full((len(rows),), float(sigma_0), device=y.device)
    batch = torch.arange(len(rows), device=y.device)  # the rows computed at this step
    running = torch.ones(len(rows), dtype=torch.bool, device=y.device)  # those of the batch not yet stopped
    sigmas, errors = [], []
    matching_steps = torch.zeros(len(rows), dtype=torch.long, device=y.device)
    steps = torch.zeros(len(rows), dtype=torch.long, device=y.device)
    failed_step = torch.zeros(len(rows), dtype=torch.long, device=y.device)
    failed_sigma = torch.full((len(rows),), float("nan"), device=y.device)
    designed = designed_steps(dict(sigma_0=sigma_0, sigma_final=sigma_final, h0=h0, beta=beta, h_schedule=h_schedule))
    kind = "unconditional" if target is None else "self-guided"
    bar = progress(total=min(designed, max_steps), desc=f"{kind} ascent", unit="steps")
    for t in range(1, max_steps + 1):
        y_t, now = y[batch], batch[running]
        error = torch.full((len(rows),), float("nan"), device=y.device)
        if target is not None:
            goal = target.phi(model, rows[batch], expected_sigma[batch], generator, calls)
            y_t, matched_error, taken = match_phi(model, y_t, goal, matching, calls, running)
            error[now], matching_steps[now] = matched_error[running], matching_steps[now] + taken[running]
        denoised = model(y_t)
        calls["denoise", len(y_t)] += 1
        f = y_t - denoised
        sigma = f.flatten(1).norm(dim=1) / math.sqrt(n)
        # NaN/inf in y_t or x̂(y_t): the row stops before this step, with its last finite x̂
        finite = torch.isfinite(sigma)
        lost = batch[running & ~finite]
        failed_step[lost], failed_sigma[lost] = t, expected_sigma[lost]
        running = running & finite
        now = batch[running]
        recorded = torch.full((len(rows),), float("nan"), device=y.device)
        recorded[now] = sigma[running]
        sigmas.append(recorded)
        errors.append(error)
        steps[now] += 1
        images[now] = denoised[running]
        h = step_size(h0, t, h_schedule)
        gamma = sigma * math.sqrt((1 - beta * h) ** 2 - (1 - h) ** 2)
        z = torch.randn(y_t.shape, generator=generator, device=y.device)
        y[batch] = y_t - h * f + gamma.view(-1, 1, 1, 1) * z
        expected_sigma[batch] = (1 - beta * h) * sigma
        bar.update()
        if t == bar.total < max_steps:  # rows behind the design go on, up to the cap
            bar.total = max_steps
        running = running & (sigma >= sigma_final)
        if not running.any():
            break
        keep = _shrunk(running)
        if keep is not None:
            batch, running = batch[keep], running[keep]
    bar.close()
    capped = torch.zeros(len(rows), dtype=torch.bool, device=y.device)
    capped[batch[running]] = True
    if capped.any():
        log.warning("%d of %d samples stopped by max_steps %d before σ fell below sigma_final %g (last σ up to %.3g)",
                    int(capped.sum()), len(rows), max_steps, sigma_final, sigmas[-1][capped].max())
    _log_failures(rows, failed_step, failed_sigma)
    return Samples(images=images.clamp(0, 1), steps=steps, matching_steps=matching_steps,
                   sigma=torch.stack(sigmas, dim=1).cpu().double().numpy(),
                   phi_error=torch.stack(errors, dim=1).cpu().double().numpy(), reached=~capped & (failed_step == 0),
                   failed_step=failed_step, failed_sigma=failed_sigma, calls=calls)


def pairwise_rmse(images: torch.Tensor) -> torch.Tensor:
    """Root-mean-square pixel distance between every pair of rows [R, R]."""
    flat = images.flatten(1).double()
    return (torch.cdist(flat, flat) / math.sqrt(flat.shape[1])).float()


def nearest(phi: torch.Tensor, paths: list[str], sigma: float) -> tuple[np.ndarray, torch.Tensor]:
    """Each row's nearest neighbour among the φ files at σ: (keys, Euclidean distances); one file at a
    time, so the whole training set's φ is never held."""
    best = torch.full((len(phi),), float("inf"))
    keys = np.empty(len(phi), dtype=object)
    for path in sorted(paths):
        meta, candidates = read_phi([path], sigma)
        distance, index = torch.cdist(phi.cpu().double(), torch.tensor(candidates, dtype=torch.float64)).min(dim=1)
        better = distance < best
        best[better] = distance[better].float()
        keys[better.numpy()] = meta.key.to_numpy()[index[better].numpy()]
    return keys, best


@torch.no_grad()
def score(model: UNetFlex, samples: Samples, target: Target, rows: torch.Tensor, *, sigma: float,
          generator: torch.Generator, train_phi: list[str], train_sigma: float, train_n_noise: int) -> pd.DataFrame:
    """One row per sample: relative φ error against its target at `sigma`, pixel distance to its
    conditioner, diversity (mean distance to the other samples of its target), and its nearest training
    image in φ space (φ at train_sigma with train_n_noise draws, as the training φ files were computed). A
    row that failed (NaN/inf) is scored on its last finite image, flagged: `failed`, and `failure` says at
    which step and σ."""
    x = samples.images
    failed_step, failed_sigma = samples.failed_step.cpu().numpy(), samples.failed_sigma.cpu().numpy()
    calls = Counter()  # scoring is not part of the sampler's cost
    goal = target.phi(model, torch.arange(len(target), device=x.device),
                      torch.full((len(target),), sigma, device=x.device), generator, calls)[rows]
    phi = noise_averaged_means(model, x, sigma, target.n_noise, generator)["M"]
    calls["phi", len(x) * (target.n_noise if sigma > 0 else 1)] += 1
    same = rows[:, None] == rows[None, :]
    others = same & ~torch.eye(len(rows), dtype=torch.bool, device=x.device)
    distances = pairwise_rmse(x)
    diversity = (distances * others).sum(dim=1) / others.sum(dim=1).clamp_min(1)
    diversity[others.sum(dim=1) == 0] = float("nan")
    nn_phi = noise_averaged_means(model, x, train_sigma, train_n_noise, generator)["M"]
    calls["phi", len(x) * (train_n_noise if train_sigma > 0 else 1)] += 1
    nn_keys, nn_distance = nearest(nn_phi, train_phi, train_sigma)
    table = pd.DataFrame(dict(
        target=rows.cpu().numpy(), sample_id=_rank_within(rows.cpu().numpy()),
        phi_error=relative_error(phi, goal).cpu().numpy(),
        pixel_distance=(x - target.images[rows]).flatten(1).norm(dim=1).cpu().numpy() / math.sqrt(x[0].numel())
        if target.images is not None else np.nan,
        diversity=diversity.cpu().numpy(), score_sigma=sigma,
        nn_key=nn_keys, nn_phi_distance=nn_distance.numpy(), nn_sigma=train_sigma,
        steps=samples.steps.cpu().numpy(), matching_steps=samples.matching_steps.cpu().numpy(),
        reached_sigma_final=samples.reached.cpu().numpy(), failed=failed_step > 0,
        failure=[f"NaN/inf at step {step}, σ {at:.3g}" if step else "" for step, at in zip(failed_step, failed_sigma)],
        final_sigma=pd.DataFrame(samples.sigma).ffill(axis=1).iloc[:, -1].to_numpy(),  # NaN: failed at its first step
        schedule_sigma=[s[~np.isnan(s)] for s in samples.sigma],
        schedule_phi_error=[e[~np.isnan(s)] for s, e in zip(samples.sigma, samples.phi_error)],
    ))
    table["phi"] = list(phi.cpu().numpy())
    return table


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2… within each run of equal values (the sample index within its target)."""
    return pd.Series(groups).groupby(groups).cumcount().to_numpy()


def draw(model: UNetFlex, target: Target, rows: torch.Tensor, start: torch.Tensor, *, guided: bool, algorithm: str,
         schedule: dict | None, ascent_options: dict, matching: dict | None, generator: torch.Generator) -> Samples:
    """The configured sampler: unconditional ascent, or self-guided on the fixed schedule or adaptive."""
    if not guided:
        return ascent(model, rows, start, **ascent_options, generator=generator)
    if algorithm == "fixed":
        sigmas = np.linspace(schedule["sigma_max"], schedule["sigma_min"], schedule["steps"]).tolist()
        return fixed_schedule(model, target, rows, start, sigmas, Matching(**matching), generator)
    return ascent(model, rows, start, **ascent_options, generator=generator, target=target, matching=Matching(**matching))
