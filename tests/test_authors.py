"""Importing the authors' trained UNet_flex (semcore.authors): key layout, numerics, round trip, safe unpickling."""

import argparse
import builtins
import collections
import os
import pickle
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semcore import authors
from semcore.model import UNetConfig, UNetFlex

PAPER = UNetConfig(channels=[64, 128, 256, 512], enc_convs=[2, 2, 2], mid_convs=3, dec_convs=[5, 6, 7])

# The paper's model.pt (upsample_with_bias=False), as documented in AUTHORS_CHECKPOINTS.md.
PAPER_KEYS = """
encoder.0.0.weight (64, 3, 3, 3)
encoder.0.0.bias (64,)
encoder.0.2.weight (64, 64, 3, 3)
encoder.0.2.bias (64,)
encoder.0.3.gammas (1, 64, 1, 1)
encoder.1.0.weight (128, 64, 3, 3)
encoder.1.0.bias (128,)
encoder.1.1.gammas (1, 128, 1, 1)
encoder.1.3.weight (128, 128, 3, 3)
encoder.1.3.bias (128,)
encoder.1.4.gammas (1, 128, 1, 1)
encoder.2.0.weight (256, 128, 3, 3)
encoder.2.0.bias (256,)
encoder.2.1.gammas (1, 256, 1, 1)
encoder.2.3.weight (256, 256, 3, 3)
encoder.2.3.bias (256,)
encoder.2.4.gammas (1, 256, 1, 1)
mid.0.weight (512, 256, 3, 3)
mid.0.bias (512,)
mid.1.gammas (1, 512, 1, 1)
mid.3.weight (512, 512, 3, 3)
mid.3.bias (512,)
mid.4.gammas (1, 512, 1, 1)
mid.6.weight (512, 512, 3, 3)
mid.6.bias (512,)
mid.7.gammas (1, 512, 1, 1)
decoder.2.0.weight (256, 512, 3, 3)
decoder.2.0.bias (256,)
decoder.2.1.gammas (1, 256, 1, 1)
decoder.2.3.weight (256, 256, 3, 3)
decoder.2.3.bias (256,)
decoder.2.4.gammas (1, 256, 1, 1)
decoder.2.6.weight (256, 256, 3, 3)
decoder.2.6.bias (256,)
decoder.2.7.gammas (1, 256, 1, 1)
decoder.2.9.weight (256, 256, 3, 3)
decoder.2.9.bias (256,)
decoder.2.10.gammas (1, 256, 1, 1)
decoder.2.12.weight (256, 256, 3, 3)
decoder.2.12.bias (256,)
decoder.2.13.gammas (1, 256, 1, 1)
decoder.2.15.weight (256, 256, 3, 3)
decoder.2.15.bias (256,)
decoder.2.16.gammas (1, 256, 1, 1)
decoder.2.18.weight (256, 256, 3, 3)
decoder.2.18.bias (256,)
decoder.2.19.gammas (1, 256, 1, 1)
decoder.1.0.weight (128, 256, 3, 3)
decoder.1.0.bias (128,)
decoder.1.1.gammas (1, 128, 1, 1)
decoder.1.3.weight (128, 128, 3, 3)
decoder.1.3.bias (128,)
decoder.1.4.gammas (1, 128, 1, 1)
decoder.1.6.weight (128, 128, 3, 3)
decoder.1.6.bias (128,)
decoder.1.7.gammas (1, 128, 1, 1)
decoder.1.9.weight (128, 128, 3, 3)
decoder.1.9.bias (128,)
decoder.1.10.gammas (1, 128, 1, 1)
decoder.1.12.weight (128, 128, 3, 3)
decoder.1.12.bias (128,)
decoder.1.13.gammas (1, 128, 1, 1)
decoder.1.15.weight (128, 128, 3, 3)
decoder.1.15.bias (128,)
decoder.1.16.gammas (1, 128, 1, 1)
decoder.0.0.weight (64, 128, 3, 3)
decoder.0.0.bias (64,)
decoder.0.1.gammas (1, 64, 1, 1)
decoder.0.3.weight (64, 64, 3, 3)
decoder.0.3.bias (64,)
decoder.0.4.gammas (1, 64, 1, 1)
decoder.0.6.weight (64, 64, 3, 3)
decoder.0.6.bias (64,)
decoder.0.7.gammas (1, 64, 1, 1)
decoder.0.9.weight (64, 64, 3, 3)
decoder.0.9.bias (64,)
decoder.0.10.gammas (1, 64, 1, 1)
decoder.0.12.weight (3, 64, 3, 3)
decoder.0.12.bias (3,)
upsample.2.weight (512, 256, 2, 2)
upsample.1.weight (256, 128, 2, 2)
upsample.0.weight (128, 64, 2, 2)
"""
UPSAMPLE_BIASES = {"upsample.1.bias": (128,), "upsample.2.bias": (256,)}

# The texture model's exp_arguments.pkl, as documented (training settings and paths left out).
PAPER_ARGUMENTS = dict(
    arch_name="UNet_flex", num_channels=3, bias=True, kernel_size=3, padding=1, num_kernels=[64, 128, 256, 512],
    num_blocks=3, num_enc_conv=[2, 2, 2], num_mid_conv=3, num_dec_conv=[5, 6, 7], NormType="LayerNorm",
    inter_skip=True, dilations=None, lr=0.001, noise_level_range=[0, 255], device=torch.device("cuda"))


def paper_shapes(upsample_bias: bool) -> dict:
    shapes = {}
    for line in PAPER_KEYS.strip().splitlines():
        key, shape = line.split(" ", 1)
        shapes[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return shapes | (UPSAMPLE_BIASES if upsample_bias else {})


def save_weights(folder, shapes: dict, prefix: str = "") -> dict:
    torch.manual_seed(0)
    state = {prefix + key: torch.randn(shape) for key, shape in shapes.items()}
    folder.mkdir(exist_ok=True)
    torch.save(state, folder / "model.pt")
    return state


def save_arguments(folder, arguments) -> None:
    with open(folder / "exp_arguments.pkl", "wb") as file:
        pickle.dump(arguments, file)


@pytest.mark.parametrize("prefix", ["", "module."])
@pytest.mark.parametrize("upsample_bias, parameters", [(False, 13_678_147), (True, 13_678_531)])
def test_the_documented_keys_load_strictly(tmp_path, prefix, upsample_bias, parameters):
    shapes = paper_shapes(upsample_bias)
    assert len(shapes) == (84 if upsample_bias else 82)
    state = save_weights(tmp_path, shapes, prefix)
    model = authors.load(tmp_path / "model.pt")  # no exp_arguments.pkl: inferred from shapes
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert model.config == replace(PAPER, upsample_bias=upsample_bias)
    ours = model.state_dict()
    assert torch.equal(ours["output.weight"], state[prefix + "decoder.0.12.weight"])
    assert torch.equal(ours["middle.7.gamma"], state[prefix + "mid.7.gammas"])
    assert torch.equal(ours["decoder.2.19.gamma"], state[prefix + "decoder.2.19.gammas"])


def test_the_documented_arguments_are_used_and_checked_against_the_weights(tmp_path):
    save_weights(tmp_path, paper_shapes(upsample_bias=True))
    save_arguments(tmp_path, PAPER_ARGUMENTS)  # no upsample_with_bias: built with the bias
    model = authors.load(tmp_path)
    assert model.config.upsample_bias and model.config.norm == "layer"
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)

    save_arguments(tmp_path, PAPER_ARGUMENTS | {"num_mid_conv": 2, "upsample_with_bias": False})
    with pytest.raises(ValueError, match=r"exp_arguments.pkl disagrees with .*model.pt: num_mid_conv .*upsample_with_bias"):
        authors.load(tmp_path)


# --- An independent reference: the authors' module structure and forward, as documented ---

SMALL = dict(arch_name="UNet_flex", num_channels=3, bias=True, kernel_size=3, padding=1, num_kernels=[8, 16, 32],
             num_enc_conv=[2, 2], num_mid_conv=2, num_dec_conv=[3, 2], inter_skip=True, dilations=None)


class AuthorsNorm(nn.Module):
    """Std-only norm: x / sd · gammas; LayerNorm: sd over (C, H, W) + 1e-5; BatchNorm (eval): running_sd."""

    def __init__(self, channels, norm_type):
        super().__init__()
        self.norm_type = norm_type
        self.gammas = nn.Parameter(torch.rand(1, channels, 1, 1) + 0.5)
        if norm_type == "BatchNorm":
            self.register_buffer("running_sd", torch.rand(1, channels, 1, 1) + 0.5)

    def forward(self, x):
        if self.norm_type == "LayerNorm":
            return x / (x.std(dim=(1, 2, 3), keepdim=True, unbiased=False) + 1e-5) * self.gammas
        return x / self.running_sd * self.gammas


class AuthorsUNet(nn.Module):
    def __init__(self, a):
        super().__init__()
        ch, self.n = a["num_kernels"], len(a["num_kernels"]) - 1

        def conv(cin, cout):
            return nn.Conv2d(cin, cout, a["kernel_size"], padding=a["padding"], bias=a["bias"])

        def normed(cin, cout, count):
            layers = []
            for i in range(count):
                layers += [conv(cin if i == 0 else cout, cout), AuthorsNorm(cout, a["NormType"]), nn.ReLU()]
            return layers

        self.encoder = nn.ModuleDict()
        for b in range(self.n):
            layers = ([conv(a["num_channels"], ch[0]), nn.ReLU()] + normed(ch[0], ch[0], a["num_enc_conv"][0] - 1)
                      if b == 0 else normed(ch[b - 1], ch[b], a["num_enc_conv"][b]))
            self.encoder[str(b)] = nn.Sequential(*layers)
        self.mid = nn.Sequential(*normed(ch[self.n - 1], ch[self.n], a["num_mid_conv"]))
        self.decoder, self.upsample = nn.ModuleDict(), nn.ModuleDict()
        upsample_bias = a.get("upsample_with_bias", a["bias"])
        for b in reversed(range(self.n)):
            self.upsample[str(b)] = nn.ConvTranspose2d(ch[b + 1], ch[b], 2, stride=2, bias=upsample_bias and b > 0)
            layers = (normed(2 * ch[0], ch[0], a["num_dec_conv"][0] - 1) + [conv(ch[0], a["num_channels"])]
                      if b == 0 else normed(2 * ch[b], ch[b], a["num_dec_conv"][b]))
            self.decoder[str(b)] = nn.Sequential(*layers)

    def forward(self, x):
        skips = []
        for b in range(self.n):
            x = self.encoder[str(b)](x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = middle = self.mid(x)
        for b in reversed(range(self.n)):
            x = self.decoder[str(b)](torch.cat([self.upsample[str(b)](x), skips[b]], dim=1))
        return x, middle.mean(dim=(2, 3))


@pytest.mark.parametrize("norm_type", ["LayerNorm", "BatchNorm"])
@pytest.mark.parametrize("upsample_with_bias", [False, "absent"])  # absent: = bias (True), the older models
def test_imported_model_computes_what_the_authors_network_computes(tmp_path, norm_type, upsample_with_bias):
    arguments = SMALL | {"NormType": norm_type, "device": torch.device("cuda", 0)}
    if upsample_with_bias != "absent":
        arguments["upsample_with_bias"] = upsample_with_bias
    torch.manual_seed(1)
    reference = AuthorsUNet(arguments).eval()
    assert ("upsample.1.bias" in reference.state_dict()) == (upsample_with_bias == "absent")
    torch.save({"module." + k: v for k, v in reference.state_dict().items()}, tmp_path / "model.pt")
    save_arguments(tmp_path, arguments)

    model = authors.load(tmp_path).eval()
    assert model.config.upsample_bias == (upsample_with_bias == "absent")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        x_hat, means = model(x, return_means=True)
        expected_x_hat, expected_middle = reference(x)
    assert (x_hat - expected_x_hat).abs().max() < 1e-5
    assert (means["M"] - expected_middle).abs().max() < 1e-5
    assert expected_middle.abs().max() > 1e-2  # the comparison is not between zeros


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    torch.manual_seed(0)
    state = AuthorsUNet(SMALL | {"NormType": "LayerNorm"}).state_dict()
    del state["mid.4.gammas"]
    state["mid.4.beta"] = torch.zeros(1, 32, 1, 1)  # a mean-subtracting norm's shift: not UNet_flex
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model.pt: .*missing keys \['mid.4.gammas'\].*unexpected keys \['mid.4.beta'\]"):
        authors.load(tmp_path / "model.pt")


@pytest.mark.parametrize("norm, upsample_bias", [("layer", False), ("batch", True)])
def test_save_authors_round_trip(tmp_path, norm, upsample_bias):
    torch.manual_seed(0)
    model = UNetFlex(UNetConfig(channels=[8, 16, 32], dec_convs=[3, 2], norm=norm, upsample_bias=upsample_bias))
    model(torch.rand(4, 3, 16, 16))  # training mode: moves the running std away from ones
    authors.save(model.eval(), tmp_path)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert "decoder.0.6.weight" in saved and "mid.1.gammas" in saved and "output.weight" not in saved
    assert authors.read_arguments(tmp_path / "exp_arguments.pkl")["NormType"] == {"layer": "LayerNorm", "batch": "BatchNorm"}[norm]

    loaded = authors.load(tmp_path).eval()
    assert loaded.config == model.config
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(model(x), loaded(x))


def test_a_model_without_norm_cannot_be_saved_in_the_authors_format(tmp_path):
    with pytest.raises(ValueError, match="model.norm"):
        authors.save(UNetFlex(UNetConfig(channels=[8, 16], norm="none")), tmp_path)


# --- exp_arguments.pkl: admitted classes only ---

class Payload:
    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize("payload, name", [
    (lambda marker: Payload(os.system, f"touch {marker}"), r"(os|posix)\.system"),
    (lambda marker: Payload(builtins.eval, f"open({str(marker)!r}, 'w')"), r"builtins\.eval"),
    (lambda marker: collections.OrderedDict(a=1), r"collections\.OrderedDict"),
])
def test_any_other_global_is_refused_and_never_runs(tmp_path, payload, name):
    marker = tmp_path / "ran"
    save_arguments(tmp_path, SMALL | {"NormType": "LayerNorm", "extra": payload(marker)})
    with pytest.raises(pickle.UnpicklingError, match=rf"exp_arguments.pkl: refuses to load global {name}: only dict"):
        authors.read_arguments(tmp_path / "exp_arguments.pkl")
    torch.save(AuthorsUNet(SMALL | {"NormType": "LayerNorm"}).state_dict(), tmp_path / "model.pt")
    with pytest.raises(pickle.UnpicklingError, match=name):
        authors.load(tmp_path)
    assert not marker.exists()


def test_a_namespace_pickle_reads_as_a_dict(tmp_path):
    save_arguments(tmp_path, argparse.Namespace(**SMALL, device=torch.device("cuda", 1)))
    arguments = authors.read_arguments(tmp_path / "exp_arguments.pkl")
    assert arguments == SMALL | {"device": "cuda:1"}
    config = authors.config_from_arguments(arguments)
    assert config.norm == "batch" and config.upsample_bias  # the authors' defaults when NormType, upsample_with_bias are absent
    assert authors.config_from_arguments(argparse.Namespace(**SMALL)) == config


@pytest.mark.parametrize("change, argument", [
    ({"inter_skip": False}, "inter_skip"),
    ({"dilations": [1, 2]}, "dilations"),
    ({"NormType": "InstanceNorm"}, "NormType"),
    ({"arch_name": "UNet"}, "arch_name"),
    ({"padding": 0}, "padding"),
])
def test_arguments_unetflex_cannot_build_are_refused_by_name(tmp_path, change, argument):
    with pytest.raises(ValueError, match=rf"^{argument}:"):
        authors.config_from_arguments(SMALL | change)
    torch.save(AuthorsUNet(SMALL | {"NormType": "LayerNorm"}).state_dict(), tmp_path / "model.pt")
    save_arguments(tmp_path, SMALL | change)
    with pytest.raises(ValueError, match=rf"exp_arguments.pkl: {argument}:"):
        authors.load(tmp_path)
