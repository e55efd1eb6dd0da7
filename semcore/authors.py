"""The authors' file format for trained UNet_flex denoisers: import them, and write models in it.

Kadkhodaie et al.'s code saves a trained network as a folder (e.g.
`denoisers/UNet_flex/imagenet/0to255_…/`) holding
- `model.pt`: `torch.save(model.state_dict())` of their UNet_flex, keys often prefixed `module.`
  (trained under DataParallel). Their module names are ours but for `mid.` (our `middle.`), the
  output conv, which is the last layer of `decoder.0` (our `output.`), and the norm's `gammas` and
  `running_sd` (our `gamma`, `running_std`); encoder, decoder and upsample indices coincide.
- `exp_arguments.pkl`: the training arguments (semcore.plan.authors_arguments reads them safely).

Use: `authors.load("denoisers/UNet_flex/imagenet/0to255_…/")` (the folder or its model.pt; without
exp_arguments.pkl the architecture is inferred from the weights' names and shapes) gives a UNetFlex in eval
mode, as the authors' loader returns it; `authors.save(model, folder)` writes the same format.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import asdict
from pathlib import Path

import torch

from semcore.files import atomic
from semcore.model import UNetFlex
from semcore.plan.authors_arguments import ARGUMENT_NAMES, config_from_arguments, read_arguments
from semcore.plan.settings import UNetConfig
from semcore.runtime import save_torch

LEAF_NAMES = {"gammas": "gamma", "running_sd": "running_std"}  # the authors' → ours


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


def load(path: str | os.PathLike, map_location="cpu") -> UNetFlex:
    """The authors' trained UNet_flex: their folder (model.pt, exp_arguments.pkl) or its model.pt; in eval
    mode, as their loader returns it (a BatchNorm model then divides by its running std).

    The architecture comes from exp_arguments.pkl beside model.pt, checked against the weights'
    shapes, or, without it, from the shapes alone. Every key must match: none missing, none left over.
    """
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
    model = UNetFlex(config)
    model.load_state_dict(to_semcore(state, config))
    return model.eval()


def _check_keys(state: dict, config: UNetConfig, weights: Path) -> None:
    """Raise ValueError listing missing, unexpected and misshapen keys, in the authors' names."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        expected = {k: v.shape for k, v in to_authors(UNetFlex(config).state_dict(), config).items()}
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    problems = ([f"missing keys {missing}"] if missing else []) + ([f"unexpected keys {unexpected}"] if unexpected else [])
    problems += [f"{k} has shape {tuple(state[k].shape)}, expected {tuple(shape)}"
                 for k, shape in expected.items() if k in state and state[k].shape != shape]
    if problems:
        raise ValueError(f"{weights}: not the UNet_flex of {config}: " + "; ".join(problems))


def save(model: UNetFlex, folder: str | os.PathLike) -> None:
    """Write `model` as the authors do: folder/model.pt and folder/exp_arguments.pkl."""
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
