"""UNet_flex: the paper's blind, fully convolutional UNet denoiser, and its block channel means ā.

Encoder blocks E1…En (convs, then 2× average pooling), a middle block M at the lowest resolution,
decoder blocks Dn…D1 (2× transposed-conv upsampling, concatenated skip, convs); D1 ends with the
output conv and returns x̂ directly. Each conv is followed by the norm and a ReLU, except the very
first conv (no norm) and the output conv. The norms divide by a standard deviation and never
subtract a mean, as in the authors' code. Blocks are named as in the paper's figure 1.

The authors' trained denoisers load with `semcore.authors.load("denoisers/UNet_flex/imagenet/0to255_…/")`;
`semcore.authors.save` writes a model in their format.
"""

from __future__ import annotations

import os
from dataclasses import asdict

import torch
from torch import nn

from semcore.plan.settings import UNetConfig
from semcore.runtime import save_torch


class StdNorm(nn.Module):
    """x · γ_c / std(x): the paper's "LayerNorm" (std over C,H,W per image) or bias-free BatchNorm."""

    def __init__(self, channels: int, kind: str, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.kind, self.eps, self.momentum = kind, eps, momentum
        # The authors' initialisation: small gains of either sign.
        self.gamma = nn.Parameter((torch.randn(1, channels, 1, 1) * (2.0 / 9.0 / 64.0)).clamp(-0.025, 0.025))
        if kind == "batch":
            self.register_buffer("running_std", torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under autocast x is bfloat16: the statistic is taken in fp32 (bf16 keeps 8 bits; the running std
        # stays fp32), the product in x's dtype. In fp32 both casts are no-ops.
        statistic_input = x.float()
        if self.kind == "layer":
            std = statistic_input.std(dim=(1, 2, 3), keepdim=True, unbiased=False) + self.eps
        elif self.training:
            std = torch.sqrt(statistic_input.var(dim=(0, 2, 3), keepdim=True, unbiased=False) + self.eps)
            with torch.no_grad():
                self.running_std.lerp_(std, self.momentum)
        else:
            std = self.running_std
        return x * (self.gamma / std).to(x.dtype)


class UNetFlex(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        ch, n = c.channels, c.num_blocks
        self.encoder = nn.ModuleList(
            self._convs(c.in_channels if b == 0 else ch[b - 1], ch[b], c.enc_convs[b], first_norm=b > 0)
            for b in range(n))
        self.pool = nn.AvgPool2d(2)
        self.middle = self._convs(ch[n - 1], ch[n], c.mid_convs)
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(ch[b + 1], ch[b], kernel_size=2, stride=2, bias=c.upsample_bias and b > 0)
            for b in range(n))  # as the authors: never a bias into D1
        self.decoder = nn.ModuleList(
            self._convs(2 * ch[b], ch[b], c.dec_convs[b] - (b == 0)) for b in range(n))
        self.output = nn.Conv2d(ch[0], c.in_channels, c.kernel_size, padding=c.kernel_size // 2, bias=c.bias)
        self.apply(_kaiming_init)

    def _convs(self, cin: int, cout: int, count: int, first_norm: bool = True) -> nn.Sequential:
        c = self.config
        layers = []
        for i in range(count):
            layers.append(nn.Conv2d(cin if i == 0 else cout, cout, c.kernel_size, padding=c.kernel_size // 2, bias=c.bias))
            if c.norm != "none" and (i > 0 or first_norm):
                layers.append(StdNorm(cout, c.norm))
            layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    def forward(self, y: torch.Tensor, return_means: bool = False):
        """x̂(y); with return_means, also {block name: ā [B, C]}, the spatial means of each block's output."""
        # Each block is reduced to its means as soon as it is computed, and each skip is dropped once the
        # decoder has used it: no block's activations outlive their use (a batch of 5,120 64×64 images
        # would otherwise hold every block's at once).
        means = {}
        skips = []
        x = y
        for b, block in enumerate(self.encoder):
            x = block(x)
            skips.append(x)
            if return_means:
                means[f"E{b + 1}"] = x.mean(dim=(2, 3))
            x = self.pool(x)
        x = self.middle(x)
        if return_means:
            means["M"] = x.mean(dim=(2, 3))
        for b in reversed(range(self.config.num_blocks)):
            x = self.decoder[b](torch.cat([self.upsample[b](x), skips.pop()], dim=1))
            if return_means and b > 0:
                means[f"D{b + 1}"] = x.mean(dim=(2, 3))
        x = self.output(x)
        if return_means:
            return x, means
        return x

    def middle_means(self, y: torch.Tensor) -> torch.Tensor:
        """ā_mid(y) [B, C], running only the encoder and the middle block (no decoder)."""
        x = y
        for block in self.encoder:
            x = self.pool(block(x))
        return self.middle(x).mean(dim=(2, 3))

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Config + weights as plain data, loadable with torch.load(weights_only=True); atomic."""
        save_torch({"config": asdict(self.config), "state_dict": self.state_dict()}, path)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, map_location="cpu") -> "UNetFlex":
        saved = torch.load(path, map_location=map_location, weights_only=True)
        model = cls(UNetConfig(**saved["config"]))
        model.load_state_dict(saved["state_dict"])
        return model


def initial_model(config: UNetConfig, seed: int) -> UNetFlex:
    """The network as training starts it: the same seed gives the same weights (the untrained baseline)."""
    torch.manual_seed(seed)
    return UNetFlex(config)


def _kaiming_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def receptive_fields(config: UNetConfig) -> dict[str, int]:
    """Receptive field, in input pixels, of one unit of each block's output and of the output x̂.

    Encoder and middle: a k×k conv at stride `jump` widens the field by (k − 1)·jump, 2× pooling by
    `jump` and doubles the stride. Decoder: follow the window a unit needs back through the decoder
    convs and upsamplings (2×2 stride-2 transposed convs map W consecutive units onto at most
    W // 2 + 1 coarser ones) to the middle block and to each skip; the widest path is the field.
    """
    k, n = config.kernel_size, config.num_blocks
    rf, jump, encoder = 1, 1, []
    for convs in config.enc_convs:
        rf += convs * (k - 1) * jump
        encoder.append(rf)
        rf, jump = rf + jump, jump * 2
    middle = rf + config.mid_convs * (k - 1) * jump

    def decoder(level: int) -> int:
        window, widest = 1, 0
        for deeper in range(level, n):
            window += config.dec_convs[deeper] * (k - 1)
            widest = max(widest, encoder[deeper] + (window - 1) * 2**deeper)  # through the skip
            window = window // 2 + 1  # through the upsampling
        return max(widest, middle + (window - 1) * 2**n)

    fields = {f"E{b + 1}": encoder[b] for b in range(n)} | {"M": middle}
    return fields | {f"D{b + 1}": decoder(b) for b in reversed(range(1, n))} | {"output": decoder(0)}
