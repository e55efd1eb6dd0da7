"""The authors' arguments file (exp_arguments.pkl beside their model.pt): the architecture it describes.

Their training arguments are a pickled dict (older runs: an argparse.Namespace) that also holds a
torch.device. It is read with an unpickler that admits only those two classes, so a tampered file cannot
run code, and without torch: the workflow checks a configured model against it when it is planned.
"""

from __future__ import annotations

import argparse
import os
import pickle

from semcore.plan.settings import UNetConfig

# UNetConfig field → the authors' argument name.
ARGUMENT_NAMES = {
    "in_channels": "num_channels", "channels": "num_kernels", "enc_convs": "num_enc_conv",
    "mid_convs": "num_mid_conv", "dec_convs": "num_dec_conv", "norm": "NormType", "bias": "bias",
    "kernel_size": "kernel_size", "upsample_bias": "upsample_with_bias",
}
NORM_TYPES = {"layernorm": "layer", "batchnorm": "batch"}


class _Namespace(dict):
    """Stands in for argparse.Namespace: the pickle rebuilds it with __new__ and then its __dict__."""

    def __setstate__(self, state: dict) -> None:
        self.update(state)


def _device(kind: str, index: int | None = None) -> str:
    """Stands in for torch.device, which pickles as torch.device(kind[, index]): the device string."""
    return kind if index is None else f"{kind}:{index}"


class _ArgumentsUnpickler(pickle.Unpickler):
    ALLOWED = {("argparse", "Namespace"): _Namespace, ("torch", "device"): _device}

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"{self.path}: refuses to load global {module}.{name}: only dict, list, "
                "argparse.Namespace and torch.device are allowed")
        return self.ALLOWED[module, name]


def read_arguments(path: str | os.PathLike) -> dict:
    """The training arguments in exp_arguments.pkl as a dict; a torch.device becomes its string."""
    with open(path, "rb") as file:
        arguments = _ArgumentsUnpickler(file, path).load()
    if not isinstance(arguments, dict):
        raise pickle.UnpicklingError(f"{path}: holds a {type(arguments).__name__}, not the arguments' dict")
    return dict(arguments)


def config_from_arguments(arguments: dict | argparse.Namespace, in_channels: int | None = None) -> UNetConfig:
    """The UNetConfig of the authors' arguments; `in_channels` stands in for a missing num_channels.

    Raises ValueError naming the argument for what UNetFlex cannot build (other architectures, no
    skip connections, dilated decoder convs, InstanceNorm, padding other than 'same').
    """
    arguments = dict(vars(arguments) if isinstance(arguments, argparse.Namespace) else arguments)
    if in_channels is not None:
        arguments.setdefault("num_channels", in_channels)
    missing = [name for name in ("arch_name", "num_kernels", "num_enc_conv", "num_mid_conv", "num_dec_conv",
                                 "bias", "kernel_size", "padding", "num_channels") if name not in arguments]
    if missing:
        raise ValueError(f"missing arguments {missing}")
    if arguments["arch_name"] != "UNet_flex":
        raise ValueError(f"arch_name: {arguments['arch_name']!r} is not UNet_flex")
    if not arguments.get("inter_skip", True):
        raise ValueError("inter_skip: False (a UNet without skip connections) is not supported")
    if arguments.get("dilations") is not None:
        raise ValueError(f"dilations: {arguments['dilations']!r} (multi-dilation decoder convs) is not supported")
    norm_type = arguments.get("NormType", "batchNorm")  # the authors' default for runs without it
    if norm_type.lower() not in NORM_TYPES:
        raise ValueError(f"NormType: {norm_type!r} is not supported (LayerNorm or BatchNorm)")
    if arguments["padding"] != arguments["kernel_size"] // 2:
        raise ValueError(f"padding: {arguments['padding']} is not kernel_size // 2 (UNetFlex keeps the image size)")
    channels = list(arguments["num_kernels"])
    return UNetConfig(
        in_channels=arguments["num_channels"], channels=channels, enc_convs=list(arguments["num_enc_conv"]),
        mid_convs=arguments["num_mid_conv"], dec_convs=list(arguments["num_dec_conv"]),
        norm=NORM_TYPES[norm_type.lower()], bias=arguments["bias"], kernel_size=arguments["kernel_size"],
        # Runs before the switch existed have the bias; with one block there is no upsampling it applies to.
        upsample_bias=bool(arguments.get("upsample_with_bias", arguments["bias"])) and len(channels) > 2)

