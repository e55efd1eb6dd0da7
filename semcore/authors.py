"""The authors' file format for trained UNet_flex denoisers: import them, and write models in it.

Kadkhodaie et al.'s code saves a trained network as a folder (e.g.
`denoisers/UNet_flex/imagenet/0to255_…/`) holding
- `model.pt`: `torch.save(model.state_dict())` of their UNet_flex, keys often prefixed `module.`
  (trained under DataParallel). Their module names are ours but for `mid.` (our `middle.`), the
  output conv, which is the last layer of `decoder.0` (our `output.`), and the norm's `gammas` and
  `running_sd` (our `gamma`, `running_std`); encoder, decoder and upsample indices coincide.
- `exp_arguments.pkl`: the training arguments, a pickled dict (older runs: an argparse.Namespace)
  that also holds a torch.device. It is read with an unpickler that admits only those two classes,
  so a tampered file cannot run code.

Use: `UNetFlex.from_authors("denoisers/UNet_flex/imagenet/0to255_…/")` (the folder or its model.pt;
without exp_arguments.pkl the architecture is inferred from the weights' names and shapes); it comes
in eval mode, as the authors' loader returns it. `model.save_authors(folder)` writes the same format.
Reading the arguments and renaming keys need no torch; only `load` and `save` import it.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from dataclasses import asdict
from pathlib import Path

from semcore.config import UNetConfig
from semcore.files import atomic, save_torch

# UNetConfig field → the authors' argument name.
ARGUMENT_NAMES = {
    "in_channels": "num_channels", "channels": "num_kernels", "enc_convs": "num_enc_conv",
    "mid_convs": "num_mid_conv", "dec_convs": "num_dec_conv", "norm": "NormType", "bias": "bias",
    "kernel_size": "kernel_size", "upsample_bias": "upsample_with_bias",
}
NORM_TYPES = {"layernorm": "layer", "batchnorm": "batch"}
LEAF_NAMES = {"gammas": "gamma", "running_sd": "running_std"}  # the authors' → ours


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


def config_from_state_dict(state: dict) -> UNetConfig:
    """The UNetConfig of the authors' weights, from key names and shapes alone."""
    state = _strip_module(state)

    def convs(block: str) -> int:
        return sum(bool(re.fullmatch(re.escape(block) + r"\.\d+\.weight", key)) for key in state)

    blocks = range(len({k.split(".")[1] for k in state if k.startswith("encoder.")}))
    if "encoder.0.0.weight" not in state or "mid.0.weight" not in state:
        raise ValueError("no encoder.0.0.weight or mid.0.weight: not the authors' UNet_flex")
    first = state["encoder.0.0.weight"]
    return UNetConfig(
        in_channels=first.shape[1],
        channels=[state[f"encoder.{b}.0.weight"].shape[0] for b in blocks] + [state["mid.0.weight"].shape[0]],
        enc_convs=[convs(f"encoder.{b}") for b in blocks],
        mid_convs=convs("mid"),
        dec_convs=[convs(f"decoder.{b}") for b in blocks],
        norm="batch" if any(k.endswith(".running_sd") for k in state) else "layer",
        bias="encoder.0.0.bias" in state,
        kernel_size=first.shape[-1],
        upsample_bias="upsample.1.bias" in state)


def to_semcore(state: dict, config: UNetConfig) -> dict:
    """The authors' state_dict renamed to UNetFlex's (a leading `module.` dropped)."""
    return _rename(state, _prefixes(config), LEAF_NAMES)


def to_authors(state: dict, config: UNetConfig) -> dict:
    """UNetFlex's state_dict renamed to the authors' UNet_flex's."""
    return _rename(state, {ours: theirs for theirs, ours in _prefixes(config).items()},
                   {ours: theirs for theirs, ours in LEAF_NAMES.items()})


def _prefixes(config: UNetConfig) -> dict:
    if config.norm not in ("layer", "batch"):
        raise ValueError(f"model.norm: {config.norm!r}: the authors' UNet_flex always normalises (layer or batch)")
    # The output conv follows dec_convs[0] − 1 (conv, norm, ReLU) triples in the authors' decoder.0.
    return {"mid.": "middle.", f"decoder.0.{3 * (config.dec_convs[0] - 1)}.": "output."}


def _rename(state: dict, prefixes: dict, leaves: dict) -> dict:
    renamed = {}
    for key, value in _strip_module(state).items():
        for old, new in prefixes.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        head, _, leaf = key.rpartition(".")
        renamed[f"{head}.{leaves.get(leaf, leaf)}"] = value
    return renamed


def _strip_module(state: dict) -> dict:
    """Keys without DataParallel's leading `module.`."""
    return {key.removeprefix("module."): value for key, value in state.items()}


def load(path: str | os.PathLike, map_location="cpu") -> tuple[UNetConfig, dict]:
    """(config, UNetFlex state_dict) of the authors' folder, or of its model.pt.

    The architecture comes from exp_arguments.pkl beside model.pt, checked against the weights'
    shapes, or, without it, from the shapes alone. Every key must match: none missing, none left over.
    """
    import torch  # here only: planning a workflow imports this module without torch

    path = Path(path)
    weights = path / "model.pt" if path.is_dir() else path
    state = _strip_module(torch.load(weights, map_location=map_location, weights_only=True))
    try:
        inferred = config_from_state_dict(state)
    except (KeyError, ValueError) as error:
        raise ValueError(f"{weights}: cannot infer the architecture: {error}") from None
    arguments_file = weights.with_name("exp_arguments.pkl")
    config = inferred
    if arguments_file.exists():
        try:
            config = config_from_arguments(read_arguments(arguments_file))
        except ValueError as error:
            raise ValueError(f"{arguments_file}: {error}") from None
        disagreeing = [f"{ARGUMENT_NAMES[name]} ({name}) is {value!r} there, {getattr(inferred, name)!r} in the weights"
                       for name, value in asdict(config).items() if getattr(inferred, name) != value]
        if disagreeing:
            raise ValueError(f"{arguments_file} disagrees with {weights}: " + "; ".join(disagreeing))
    _check_keys(state, config, weights)
    return config, to_semcore(state, config)


def _check_keys(state: dict, config: UNetConfig, weights: Path) -> None:
    """Raise ValueError listing missing, unexpected and misshapen keys, in the authors' names."""
    import torch
    from semcore.model import UNetFlex

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        expected = {k: v.shape for k, v in to_authors(UNetFlex(config).state_dict(), config).items()}
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    problems = ([f"missing keys {missing}"] if missing else []) + ([f"unexpected keys {unexpected}"] if unexpected else [])
    problems += [f"{k} has shape {tuple(state[k].shape)}, expected {tuple(shape)}"
                 for k, shape in expected.items() if k in state and state[k].shape != shape]
    if problems:
        raise ValueError(f"{weights}: not the UNet_flex of {config}: " + "; ".join(problems))


def save(model, folder: str | os.PathLike) -> None:
    """Write `model` (a UNetFlex) as the authors do: folder/model.pt and folder/exp_arguments.pkl."""
    import torch

    config = model.config
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_torch(to_authors(model.state_dict(), config), folder / "model.pt")
    arguments = {ARGUMENT_NAMES[name]: value for name, value in asdict(config).items()}
    arguments |= {"arch_name": "UNet_flex", "NormType": {"layer": "LayerNorm", "batch": "BatchNorm"}[config.norm],
                  "padding": config.kernel_size // 2, "num_blocks": config.num_blocks,
                  "inter_skip": True, "dilations": None, "device": torch.device("cpu")}
    with atomic(folder / "exp_arguments.pkl") as tmp, open(tmp, "wb") as file:
        pickle.dump(arguments, file)
