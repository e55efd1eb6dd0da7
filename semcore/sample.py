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
the same calls alone. The bookkeeping of rows (which are still computed, which failed, each one's
trajectory) is `Rows`, apart from the samplers' maths.

`sample_target` is what the workflow's sampling rules and the `semcore sample` command all run: a Target (the
conditioning images, `target_images` of the shards or an image file; or fixed φ vectors such as k-means
centroids), the start image (`start_image`), the configured sampler (`draw`), then `score`;
`sample_and_score` is a workflow job's whole computation.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from semcore.cluster import nearest_in_chunks
from semcore.model import UNetFlex
from semcore.phi import noise_averaged_means, phi_chunks
from semcore.plan.sampler import designed_steps, step_size
from semcore.plan.schema import default
from semcore.progress import progress
from semcore.runtime import as_model_input
from semcore.shards import images_by_key, read_batches, shard_paths

log = logging.getLogger(__name__)

# Adam's constants (torch's defaults; the authors use torch.optim.Adam).
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
GREY = 0.45  # the authors' flat grey start of unconditional samples

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


def start_image(paths: list[str], kind: str, limit: int = 10_000) -> torch.Tensor:
    """The samplers' starting image [C, H, W] in [0, 1] from the first `limit` images of the shards (a mean
    converges long before a large data set is read whole): `mean_image`, their pixel-wise mean;
    `mean_colour`, a flat image of their per-channel mean colour (the authors'); `grey`, flat GREY."""
    total, count = None, 0
    for _, images in read_batches(paths, 512, limit=1 if kind == "grey" else limit):  # grey: the shape only
        batch = images.double().sum(dim=0)
        total, count = (batch if total is None else total + batch), count + len(images)
    mean = (total / count / 255).float()
    if kind == "mean_colour":
        return mean.mean(dim=(1, 2), keepdim=True).expand_as(mean).clone()
    return torch.full_like(mean, GREY) if kind == "grey" else mean


def target_images(shard_dir: str | Path, manifest: pd.DataFrame, targets: int | list[str], batch: int,
                  per_batch: int) -> tuple[list[str], torch.Tensor]:
    """The conditioning images of batch `batch` of the sampling targets (the first N test images, or a list
    of keys), `per_batch` to a batch: (keys, uint8 images [T, C, H, W])."""
    first, last = batch * per_batch, (batch + 1) * per_batch
    if isinstance(targets, int):
        wanted = min(last, targets)
        metas, images = next(read_batches(shard_paths(shard_dir, "test"), wanted, limit=wanted))
        if len(metas) < wanted:
            raise ValueError(f"sample.targets: {targets} test images asked for, the test split has {len(metas)}")
        return [m["key"] for m in metas[first:]], images[first:]
    keys = targets[first:last]
    found = images_by_key(shard_dir, manifest, keys)
    missing = [k for k in keys if k not in found]
    if missing:
        raise KeyError(f"sample.targets: keys not in the shards: {missing}")
    return keys, torch.from_numpy(np.stack([found[k] for k in keys])).permute(0, 3, 1, 2)


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


class Rows:
    """A sampler's rows, kept apart from its maths: the rows a step computes (`batch`, their positions in the
    run) and which of those still run (`running`, over the batch; `now`, their positions); per row its score
    steps, matching steps, σ and φ error at each step, and the step at which it became NaN/inf with the σ
    that step was designed for. A row that fails stops before that step: its σ and φ error are NaN from
    there on. Rows that stop leave the batch in steps (see SHRINK)."""

    def __init__(self, count: int, device: torch.device):
        self.batch = torch.arange(count, device=device)
        self.running = torch.ones(count, dtype=torch.bool, device=device)
        self.steps, self.matching_steps, self.failed_step = (
            torch.zeros(count, dtype=torch.long, device=device) for _ in range(3))
        self.failed_sigma = torch.full((count,), float("nan"), device=device)
        self.sigma, self.phi_error = [], []  # per step: [count] float64, NaN for rows not running

    @property
    def now(self) -> torch.Tensor:
        return self.batch[self.running]

    def step(self, t: int, sigma, finite: torch.Tensor, designed, error: torch.Tensor | None = None,
             taken: torch.Tensor | None = None) -> None:
        """Step t computed on the batch: its σ (per batch row, or one for all), which rows stayed finite, the
        σ the step was designed for (per row of the run, or one for all); with a matching step, its error and
        Adam steps per batch row (counted for a row that fails at this step too)."""
        if taken is not None:
            self.matching_steps[self.now] += taken[self.running]
        lost = self.batch[self.running & ~finite]
        self.failed_step[lost] = t
        self.failed_sigma[lost] = designed[lost] if torch.is_tensor(designed) else designed
        self.running = self.running & finite
        self.sigma.append(self._recorded(sigma))
        self.phi_error.append(self._recorded(error))
        self.steps[self.now] += 1

    def _recorded(self, values) -> torch.Tensor:
        row = torch.full(self.steps.shape, float("nan"), dtype=torch.float64, device=self.steps.device)
        if values is not None:
            row[self.now] = values[self.running].double() if torch.is_tensor(values) else values
        return row

    def stop(self, done: torch.Tensor) -> bool:
        """The batch rows `done` stop; the batch shrinks when it can. False once no row runs."""
        self.running = self.running & ~done
        if not self.running.any():
            return False
        keep = _shrunk(self.running)
        if keep is not None:
            self.batch, self.running = self.batch[keep], self.running[keep]
        return True

    def unfinished(self) -> torch.Tensor:
        """Per row of the run: still running (when the loop ends, a step cap stopped it)."""
        unfinished = torch.zeros(self.steps.shape, dtype=torch.bool, device=self.steps.device)
        unfinished[self.now] = True
        return unfinished

    def samples(self, images: torch.Tensor, rows: torch.Tensor, calls: Counter, capped=None) -> Samples:
        """The run's Samples, its failures logged; `capped` rows (a step cap stopped them) are not `reached`."""
        _log_failures(rows, self.failed_step, self.failed_sigma)
        reached = self.failed_step == 0 if capped is None else (self.failed_step == 0) & ~capped
        return Samples(images=images.clamp(0, 1), steps=self.steps, matching_steps=self.matching_steps,
                       sigma=torch.stack(self.sigma, dim=1).cpu().numpy(),
                       phi_error=torch.stack(self.phi_error, dim=1).cpu().numpy(), reached=reached,
                       failed_step=self.failed_step, failed_sigma=self.failed_sigma, calls=calls)


@torch.no_grad()
def fixed_schedule(model: UNetFlex, target: Target, rows: torch.Tensor, start: torch.Tensor, sigmas: list[float],
                   matching: Matching, generator: torch.Generator) -> Samples:
    """Self-guided sampling on a fixed σ schedule: rows[i] is the target of row i; start [C, H, W] the
    initial image; each row draws its own φ* at every σ. A row that becomes NaN/inf (its matched or
    denoised image) keeps its last finite image; every row is still computed, so that the others draw the
    same noise."""
    calls, track = Counter(), Rows(len(rows), start.device)
    x = start.expand(len(rows), *start.shape).contiguous(memory_format=torch.channels_last)
    for k, sigma in enumerate(progress(sigmas, desc="sampling on a fixed schedule", unit="steps"), 1):
        goal = target.phi(model, rows, torch.full((len(rows),), sigma, device=x.device), generator, calls)
        y = x + sigma * torch.randn(x.shape, generator=generator, device=x.device)
        y, error, taken = match_phi(model, y, goal, matching, calls)
        denoised = model(y)
        calls["denoise", len(y)] += 1
        track.step(k, sigma, torch.isfinite(denoised.flatten(1)).all(dim=1), sigma, error, taken)
        x[track.now] = denoised[track.running]
    return track.samples(x, rows, calls)


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
    calls, track, n = Counter(), Rows(len(rows), start.device), start.numel()
    y = start + sigma_0 * torch.randn((len(rows), *start.shape), generator=generator, device=start.device)
    y = y.contiguous(memory_format=torch.channels_last)
    images = start.expand_as(y).clone(memory_format=torch.channels_last)  # a row failing at once keeps it
    expected_sigma = torch.full((len(rows),), float(sigma_0), device=y.device)
    designed = designed_steps(dict(sigma_0=sigma_0, sigma_final=sigma_final, h0=h0, beta=beta, h_schedule=h_schedule))
    kind = "unconditional" if target is None else "self-guided"
    bar = progress(total=min(designed, max_steps), desc=f"{kind} ascent", unit="steps")
    for t in range(1, max_steps + 1):
        y_t, error, taken = y[track.batch], None, None
        if target is not None:  # the matching step
            goal = target.phi(model, rows[track.batch], expected_sigma[track.batch], generator, calls)
            y_t, error, taken = match_phi(model, y_t, goal, matching, calls, track.running)
        denoised = model(y_t)
        calls["denoise", len(y_t)] += 1
        f = y_t - denoised
        sigma = f.flatten(1).norm(dim=1) / math.sqrt(n)
        track.step(t, sigma, torch.isfinite(sigma), expected_sigma, error, taken)
        images[track.now] = denoised[track.running]
        h = step_size(h0, t, h_schedule)
        gamma = sigma * math.sqrt((1 - beta * h) ** 2 - (1 - h) ** 2)
        z = torch.randn(y_t.shape, generator=generator, device=y.device)
        y[track.batch] = y_t - h * f + gamma.view(-1, 1, 1, 1) * z
        expected_sigma[track.batch] = (1 - beta * h) * sigma
        bar.update()
        if t == bar.total < max_steps:  # rows behind the design go on, up to the cap
            bar.total = max_steps
        if not track.stop(sigma < sigma_final):
            break
    bar.close()
    capped = track.unfinished()
    if capped.any():
        log.warning("%d of %d samples stopped by max_steps %d before σ fell below sigma_final %g (last σ up to %.3g)",
                    int(capped.sum()), len(rows), max_steps, sigma_final, track.sigma[-1][capped].max())
    return track.samples(images, rows, calls, capped)


def pairwise_rmse(images: torch.Tensor) -> torch.Tensor:
    """Root-mean-square pixel distance between every pair of rows [R, R]."""
    flat = images.flatten(1).double()
    return (torch.cdist(flat, flat) / math.sqrt(flat.shape[1])).float()


def nearest(phi: torch.Tensor, paths: list[str], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest neighbour among the φ files at σ: (keys, Euclidean distances, float32); one file
    at a time (cluster.nearest_in_chunks), so the whole training set's φ is never held."""
    found = nearest_in_chunks(phi.cpu().numpy(), phi_chunks(paths, sigma), 1)
    return found.key.to_numpy(), found.distance.to_numpy().astype(np.float32)


@torch.no_grad()
def score(model: UNetFlex, samples: Samples, target: Target, rows: torch.Tensor, *, sigma: float,
          generator: torch.Generator, train_phi: list[str] | None = None, train_sigma: float | None = None,
          train_n_noise: int = 1) -> pd.DataFrame:
    """One row per sample: relative φ error against its target at `sigma`, pixel distance to its
    conditioner, diversity (mean distance to the other samples of its target), and its nearest training
    image in φ space (φ at train_sigma with train_n_noise draws, as the training φ files were computed;
    without train_phi, nn_key None and nn_phi_distance NaN). A row that failed (NaN/inf) is scored on its
    last finite image, flagged: `failed`, and `failure` says at which step and σ."""
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
    nn_keys, nn_distance = np.full(len(x), None, dtype=object), np.full(len(x), np.nan, dtype=np.float32)
    if train_phi:
        nn_phi = noise_averaged_means(model, x, train_sigma, train_n_noise, generator)["M"]
        calls["phi", len(x) * (train_n_noise if train_sigma > 0 else 1)] += 1
        nn_keys, nn_distance = nearest(nn_phi, train_phi, train_sigma)
    table = pd.DataFrame(dict(
        target=rows.cpu().numpy(), sample_id=_rank_within(rows.cpu().numpy()),
        phi_error=relative_error(phi, goal).cpu().numpy(),
        pixel_distance=(x - target.images[rows]).flatten(1).norm(dim=1).cpu().numpy() / math.sqrt(x[0].numel())
        if target.images is not None else np.nan,
        diversity=diversity.cpu().numpy(), score_sigma=sigma,
        nn_key=nn_keys, nn_phi_distance=nn_distance, nn_sigma=train_sigma,
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


def sample_target(model: UNetFlex, target: Target, per_target: int, start: torch.Tensor, *,
                  generator: torch.Generator, **sampler) -> tuple[torch.Tensor, Samples]:
    """per_target samples of each of the target's φ* from `start` [C, H, W], by the sampler `draw` configures
    (`sampler`: guided, algorithm, schedule, ascent_options, matching), on the model's device: (each row's
    target index, the Samples), for `score`."""
    device = next(model.parameters()).device
    rows = torch.arange(len(target), device=device).repeat_interleave(per_target)
    return rows, draw(model, target, rows, start.to(device), generator=generator, **sampler)


def sample_images(model: UNetFlex, images: torch.Tensor, per_target: int, start: torch.Tensor, *, n_noise: int,
                  top_k: int | None, generator: torch.Generator, **sampler) -> tuple[Target, torch.Tensor, Samples]:
    """`sample_target` of conditioning images (uint8 [T, C, H, W]): (the Target, each row's target index, the
    Samples)."""
    target = Target(images=as_model_input(images, next(model.parameters()).device), n_noise=n_noise, top_k=top_k)
    return (target, *sample_target(model, target, per_target, start, generator=generator, **sampler))


def sample_and_score(model: UNetFlex, target: Target, per_target: int, start: torch.Tensor, *,
                     generator: torch.Generator, score_sigma: float, train_phi: list[str], phi_sigmas: list[float],
                     phi_n_noise: int, **sampler) -> tuple[pd.DataFrame, Samples]:
    """What a workflow sampling job computes: `sample_target`, timed and logged, then `score` at score_sigma,
    each sample's nearest training image searched in the φ files (phi.sigmas, phi.n_noise) at the σ of
    phi_sigmas closest to score_sigma. Returns (the score table, the Samples)."""
    began = time.perf_counter()
    rows, samples = sample_target(model, target, per_target, start, generator=generator, **sampler)
    log.info("%d samples of %d targets in %.1f s; network calls (kind, batch): %s", len(rows), len(target),
             time.perf_counter() - began, dict(samples.calls))
    train_sigma = min(phi_sigmas, key=lambda s: abs(s - score_sigma))
    table = score(model, samples, target, rows, sigma=score_sigma, generator=generator, train_phi=train_phi,
                  train_sigma=train_sigma, train_n_noise=phi_n_noise)
    return table, samples
