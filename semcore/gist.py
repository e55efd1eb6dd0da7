"""Gist, measured: a small classifier of what an image shows, to score whether self-guided samples keep
their conditioner's class, and how far sample sets are from real images.

φ matching alone says the network's representation agrees; whether a viewer would see the same scene
needs an independent judge. The judge here is a multi-head CNN trained on the run's own train split: on
the synthetic scenes one head per ground-truth factor (background, foreground, and their hues in equal
bins), on other sources one head for the label. It is small and fast on purpose: a measuring device, not
a result.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from semcore import figures, scenes  # noqa: E402
from semcore.config import default  # noqa: E402
from semcore.files import save_torch  # noqa: E402
from semcore.shards import factor_table, read_batches, shard_paths  # noqa: E402

log = logging.getLogger(__name__)

MEASURES = ("guided", "unconditional", "real_same_class", "conditioner")
PREDICT_BATCH = 512


@dataclass
class GistConfig:
    epochs: int = default("gist.epochs")
    batch_size: int = default("gist.batch_size")
    lr: float = default("gist.lr")  # AdamW's peak learning rate on a one-cycle schedule
    hue_bins: int = default("gist.hue_bins")
    seed: int = default("gist.seed")
    width: int = default("gist.width")  # channels of the first conv, doubled at each next one; features: 16 × width


def gist_targets(manifest: pd.DataFrame, hue_bins: int) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """(class index of every written image per head, -1 where the head does not apply; indexed by key),
    {head: class names}.

    Synthetic scenes: background, foreground, and the hues of both (circular hue in [0, 1) → bin
    floor(hue · hue_bins) mod hue_bins; fg_hue only where there is a foreground). Other sources: the label
    (-1, an unlabelled file, does not apply). A head with fewer than two classes among the images is
    dropped: there is nothing to learn or to score; a ValueError when no head is left."""
    written = manifest[manifest.status == "written"].set_index("key")
    factors = factor_table(manifest).reindex(written.index)
    if {"background", "foreground"} <= set(factors.columns):
        hues = [f"hue {i / hue_bins:.2f}–{(i + 1) / hue_bins:.2f}" for i in range(hue_bins)]
        classes = {"background": list(scenes.BACKGROUNDS), "foreground": list(scenes.FOREGROUNDS),
                   "bg_hue": hues, "fg_hue": hues}
        codes = {name: pd.Categorical(factors[name], categories=classes[name]).codes
                 for name in ("background", "foreground")}
        for name in ("bg_hue", "fg_hue"):
            hue = pd.to_numeric(factors.get(name, pd.Series(np.nan, factors.index)), errors="coerce").to_numpy()
            codes[name] = np.where(np.isnan(hue), -1, np.floor(np.nan_to_num(hue) * hue_bins) % hue_bins)
    else:
        labels = written.label.where(written.label >= 0)
        values = sorted(labels.dropna().unique())
        names = written.groupby("label").label_name.first()
        classes = {"label": [str(names[v]) or str(v) for v in values]}
        codes = {"label": pd.Categorical(labels, categories=values).codes}
    codes = pd.DataFrame(codes, index=written.index).astype(np.int64)
    counts = {name: codes[name][codes[name] >= 0].nunique() for name in classes}
    for name in [n for n, count in counts.items() if count < 2]:
        log.warning("gist head %s dropped: %d class(es) among the images", name, counts[name])
        del classes[name]
    if not classes:
        source = written.source.iloc[0] if len(written) else "?"
        raise ValueError(f"gist: the {source!r} images have fewer than two classes of {sorted(counts)} "
                         f"({counts}): a classifier has nothing to learn; gist scores need labelled images")
    return codes[list(classes)], classes


def split_images(shard_dir: str, manifest: pd.DataFrame, split: str, limit: int | None,
                 seed: int) -> tuple[list[str], torch.Tensor]:
    """(keys, uint8 [N, C, H, W]) of the split's written images that the manifest lists: all, or a seeded
    random `limit` of them (shard order may group classes: the first ones would not do). Every image of
    the split is decoded once; only the wanted are kept, as copies (a view would hold its whole batch)."""
    keys = manifest[(manifest.status == "written") & (manifest.split == split)].key
    if limit is not None and len(keys) > limit:
        keys = keys.sample(n=limit, random_state=seed)
    wanted, found, parts = set(keys), [], []
    for metas, images in read_batches(shard_paths(shard_dir, split), 256):
        keep = [i for i, meta in enumerate(metas) if meta["key"] in wanted]
        found += [metas[i]["key"] for i in keep]
        parts.append(images[keep])
    return found, torch.cat(parts)


class GistNet(nn.Module):
    """Four 3×3 conv + BatchNorm + ReLU layers (strides 2, 1, 2, 2), then the global average and maximum of
    each channel: the features; a linear head per factor. Inputs in [0, 1], [B, C, H, W], any H, W ≥ 8.

    Measured on the demo scenes: a full-resolution first layer costs ~3× the time for no better foreground
    head; the maximum beside the average lifts that head (a small shape on a large background) from 0.63
    to 0.68; six layers reach 0.74, in ~4× the time."""

    def __init__(self, in_channels: int, classes: dict[str, list[str]], config: GistConfig):
        super().__init__()
        self.in_channels, self.classes, self.config = in_channels, classes, config
        layers, channels = [], in_channels
        for out, stride in ((config.width, 2), (2 * config.width, 1), (4 * config.width, 2), (8 * config.width, 2)):
            layers += [nn.Conv2d(channels, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.convs = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({name: nn.Linear(2 * channels, len(names)) for name, names in classes.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        z = self.convs(x)
        return torch.cat([z.mean(dim=(2, 3)), z.amax(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.features(x)
        return {name: head(z) for name, head in self.heads.items()}

    def save(self, path: str | os.PathLike) -> None:
        """Config, heads and weights as plain data, loadable with torch.load(weights_only=True); atomic."""
        save_torch({"config": asdict(self.config), "in_channels": self.in_channels, "classes": self.classes,
                    "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GistNet":
        saved = torch.load(path, map_location="cpu", weights_only=True)
        net = cls(saved["in_channels"], saved["classes"], GistConfig(**saved["config"]))
        net.load_state_dict(saved["state_dict"])
        return net.eval()


def _as_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 → [0, 1]; channels-last (measured ~2× faster on the CPU at batch 128)."""
    images = images.float().div(255) if images.dtype == torch.uint8 else images.float()
    return images.contiguous(memory_format=torch.channels_last)


def dihedral(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each square image [N, C, H, H] flipped, transposed, both or neither, at random: the eight
    symmetries of the square."""
    flips = torch.rand(3, len(images), generator=generator)[..., None, None, None] < 0.5
    images = torch.where(flips[0], images.flip(-1), images)
    images = torch.where(flips[1], images.flip(-2), images)
    return torch.where(flips[2], images.transpose(-1, -2), images)


def train(images: torch.Tensor, codes: torch.Tensor, classes: dict[str, list[str]], config: GistConfig) -> GistNet:
    """Fit on uint8 images [N, C, H, W] and class codes [N, heads] (-1: the head does not apply): AdamW on
    the sum of the heads' cross-entropies, one-cycle learning rate.

    The scenes' factors do not change under the square's symmetries (shapes are drawn at any angle), so
    scene images are augmented with them. Measured on the demo (5,400 training images, defaults): without,
    the net memorises (train accuracy of the foreground head 0.92, test 0.65); with, train 0.74 and test
    0.67, fg_hue 0.87 → 0.93, the other heads within a point. Labels may change (a flipped digit), so
    labelled images are not augmented."""
    torch.manual_seed(config.seed)
    net = GistNet(images.shape[1], classes, config).to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(config.seed)
    # A last batch of one image would break BatchNorm on 8×8 inputs (one value per channel): drop it.
    n = len(images) - (len(images) % config.batch_size == 1)
    steps = config.epochs * math.ceil(n / config.batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps)
    augment = "label" not in classes and images.shape[-1] == images.shape[-2]
    net.train()
    for epoch in range(config.epochs):
        total = 0.0
        for batch in torch.randperm(len(images), generator=generator)[:n].split(config.batch_size):
            x, target = images[batch], codes[batch]
            logits = net(_as_input(dihedral(x, generator) if augment else x))
            loss = sum(F.cross_entropy(logits[name], target[:, i], ignore_index=-1, reduction="sum")
                       / (target[:, i] >= 0).sum().clamp_min(1) for i, name in enumerate(classes))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        log.info("gist epoch %d: loss %.3f (sum over %d heads)", epoch + 1, total / n, len(classes))
    return net.eval()


@torch.no_grad()
def _batched(net: GistNet, images: torch.Tensor, fn) -> list:
    net.eval()
    return [fn(_as_input(images[start:start + PREDICT_BATCH])) for start in range(0, len(images), PREDICT_BATCH)]


def predict(net: GistNet, images: torch.Tensor) -> pd.DataFrame:
    """The predicted class index per head (a column each) of images: uint8 [N, C, H, W] or floats in [0, 1]."""
    parts = _batched(net, images, lambda x: {name: out.argmax(1) for name, out in net(x).items()})
    return pd.DataFrame({name: torch.cat([p[name] for p in parts]).numpy() for name in net.classes})


def features(net: GistNet, images: torch.Tensor) -> np.ndarray:
    """The penultimate features [N, 16 · width] (each channel's global average and maximum) of images, as
    `predict` takes them."""
    return torch.cat(_batched(net, images, net.features)).numpy()


def accuracy(predicted: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per head, over the images where it applies (frames aligned by index): accuracy, and chance, the
    share of the most common class (what always guessing it scores)."""
    rows = []
    for head in predicted.columns:
        applies = truth[head] >= 0
        true, guess = truth[head][applies], predicted[head][applies]
        rows.append(dict(head=head, n=len(true), classes=true.nunique(), accuracy=float((guess == true).mean()),
                         chance=float(true.value_counts(normalize=True).max())))
    return pd.DataFrame(rows)


def agreement(samples: pd.DataFrame, sample_predictions: pd.DataFrame, truth: pd.DataFrame, labels: pd.Series,
              real: pd.DataFrame, conditioners: pd.DataFrame, max_real: int = 50, seed: int = 0) -> pd.DataFrame:
    """How often the classifier sees the conditioner's true class, per target and head, as a tidy table
    (target, key, head, measure, value, n), with an overall row per head and measure (target and key
    null; value the mean over targets, n the targets counted).

    samples: method ("self-guided" | "unconditional"), target, key (the conditioner's; unconditional rows
    carry their target's); sample_predictions: predicted classes, aligned with samples' rows; truth: true
    classes by key (-1 where a head does not apply: that target has no row for it); labels: the label by
    key, defining "same class"; real: predicted classes of held-out real test images by key;
    conditioners: predicted classes of the conditioners by key.

    Measures: guided, the share of self-guided samples predicted as the conditioner's class;
    unconditional, the same for the unconditional samples scored against the target (chance level);
    real_same_class, the same for up to max_real (seeded random) real test images of the conditioner's
    label, the conditioner excluded: the ceiling for heads that the label determines (the scenes' label
    is the background × foreground pair). Colour heads are not the class: same-class real images score
    near chance there, and the ceiling is conditioner, whether the classifier gets the conditioner itself
    right (its predictions are only as good as the classifier's test accuracy)."""
    predicted, real_labels = sample_predictions.set_axis(samples.index), labels.reindex(real.index)
    rows = []
    for (target, key), group in samples.groupby(["target", "key"]):
        label = labels.get(key)
        same = real[(real_labels == label) & (real.index != key)] if pd.notna(label) and label >= 0 else real[:0]
        same = same.sample(n=min(max_real, len(same)), random_state=seed)
        guesses = {"guided": predicted.loc[group.index[group.method == "self-guided"]],
                   "unconditional": predicted.loc[group.index[group.method == "unconditional"]],
                   "real_same_class": same, "conditioner": conditioners.loc[[key]]}
        for head in sample_predictions.columns:
            true = truth.at[key, head]
            if true < 0:
                continue
            for measure in MEASURES:
                guess = guesses[measure][head]
                rows.append(dict(target=target, key=key, head=head, measure=measure,
                                 value=float((guess == true).mean()) if len(guess) else np.nan, n=len(guess)))
    table = pd.DataFrame(rows, columns=["target", "key", "head", "measure", "value", "n"])
    overall = (table.groupby(["head", "measure"], sort=False).value.agg(value="mean", n="count").reset_index()
               .assign(target=pd.NA, key=None))
    return pd.concat([table, overall[table.columns]], ignore_index=True).astype({"target": "Int64"})


def mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² between the rows of x and of y (each ≥ 2 rows, else NaN) with the cubic polynomial kernel
    k(a, b) = (a·b / d + 1)³: the kernel inception distance's (Bińkowski et al. 2018)."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    d, m, n = x.shape[1], len(x), len(y)
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    return float((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid(sets: dict[str, np.ndarray], real: np.ndarray, subsets: int = 20, seed: int = 0) -> pd.DataFrame:
    """KID on the classifier's features: per named sample set, mean and std of mmd2 against `subsets`
    random subsets of real images of the set's size (all real images when fewer), and the reference, what
    "indistinguishable from real" scores: mmd2 between two disjoint random halves of the real images, each
    of the largest set's size (at most half the real images).

    Limits: a few dozen samples make it noisy (the std is over real subsets only: the samples are fixed);
    the features are those of a classifier trained on this data, not Inception's, so values compare only
    within a run; it measures how the set's distribution matches the real one, not any sample's quality,
    and self-guided samples cluster around a few conditioners, so they score above the reference even as
    perfect reconstructions: compare them with the unconditional set, and each with the reference.

    Every feature is first standardised by the real images' mean and std: the classifier's features have
    no common scale (raw, x·y/d ≈ 1.5 on the demo and the cubic term dominates); measured on the demo,
    150 noisy images (σ = 12/255) then stand 4.5 stds from real instead of 3.7, blurred ones 1.3 instead
    of 0.4."""
    rng = np.random.default_rng(seed)
    mean, std = real.mean(axis=0), real.std(axis=0) + 1e-6
    sets, real = {name: (x - mean) / std for name, x in sets.items()}, (real - mean) / std
    rows = []
    for name, x in sets.items():
        m = min(len(x), len(real))
        values = [mmd2(x, real[rng.choice(len(real), m, replace=False)]) for _ in range(subsets)]
        rows.append(dict(set=name, n=len(x), n_real=m, subsets=subsets, kid=np.mean(values), kid_std=np.std(values)))
    n = min(max(len(x) for x in sets.values()), len(real) // 2)
    halves = [rng.permutation(len(real))[:2 * n].reshape(2, n) for _ in range(subsets)]
    values = [mmd2(real[a], real[b]) for a, b in halves]
    rows.append(dict(set="real (disjoint halves)", n=n, n_real=n, subsets=subsets, kid=np.mean(values),
                     kid_std=np.std(values)))
    return pd.DataFrame(rows)


def agreement_figure(table: pd.DataFrame, path: str) -> None:
    """Grouped bars per head: the overall share of each measure, the targets' values as points. Sized for a
    paper's column (3.4 in). Could join semcore/figures.py."""
    heads = list(dict.fromkeys(table["head"]))
    overall = table[table.target.isna()].set_index(["head", "measure"]).value
    per_target = table[table.target.notna()]
    colours = dict(zip(MEASURES, ("tab:blue", "tab:gray", "tab:green", "tab:orange")))
    labels = dict(guided="self-guided", unconditional="unconditional", real_same_class="real, same class",
                  conditioner="conditioner")
    width = 0.8 / len(MEASURES)
    jitter = np.random.default_rng(0)
    with plt.rc_context({"font.size": 7, "axes.titlesize": 8}):
        fig, ax = plt.subplots(figsize=(3.4, 2.6), constrained_layout=True)
        for i, measure in enumerate(MEASURES):
            x = np.arange(len(heads)) + (i - (len(MEASURES) - 1) / 2) * width
            ax.bar(x, [overall.get((h, measure), np.nan) for h in heads], width, color=colours[measure],
                   label=labels[measure])
            points = per_target[per_target.measure == measure]
            position = x[[heads.index(h) for h in points["head"]]]
            ax.scatter(position + jitter.uniform(-width / 4, width / 4, len(points)), points.value, s=4,
                       color="k", alpha=0.5, linewidths=0, zorder=3)
        ax.set_xticks(np.arange(len(heads)), heads)
        ax.set(ylim=(-0.03, 1.03), ylabel="share predicted as the\nconditioner's class", xlabel="classifier head",
               title="Does the sample keep its conditioner's class?")
        ax.legend(ncol=2, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
        figures.save(fig, path, dpi=300)
