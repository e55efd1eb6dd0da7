import pytest
import yaml
from snakemake.utils import validate

from semcore.config import ConfigError, check, emergence_steps, final_step, model_config

from conftest import REPO, TINY_CONFIG

SCHEMA = REPO / "schemas" / "config.schema.yaml"


def validated(config: dict) -> dict:
    config = yaml.safe_load(yaml.safe_dump(config))
    validate(config, str(SCHEMA))
    return config


@pytest.mark.parametrize("path", ["config.yaml", *sorted(p.name for p in (REPO / "configs").glob("*.yaml"))])
def test_shipped_configs_are_valid(path):
    file = REPO / path if path == "config.yaml" else REPO / "configs" / path
    config = validated(yaml.safe_load(file.read_text()))
    if config["data"]["source"] == "imagenet64":  # its npz paths are placeholders to fill in
        with pytest.raises(ConfigError, match="data.imagenet64.paths: not found"):
            check(config)
    else:
        check(config)


def test_the_paper_configuration_builds_the_authors_model():
    config = validated(yaml.safe_load((REPO / "configs" / "imagenet64-cluster.yaml").read_text()))
    model = model_config(config)
    assert model.channels == [64, 128, 256, 512] and model.dec_convs == [5, 6, 7]


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["data"].update(size=18), "data.size"),
    (lambda c: c["data"].update(source="folder", folder={"path": "/nonexistent"}), "data.folder.path"),
    (lambda c: c["train"].update(loss_weighting="inv_sigma_squared", sigma_min=0.0), "train.sigma_min"),
    (lambda c: c["train"].update(epochs=10), "train.steps, train.epochs"),
    (lambda c: c["train"].update(lr_halve_every=5, lr_halve_every_epochs=1), "train.lr_halve_every, train.lr_halve_every_epochs"),
    (lambda c: c["model"].update(pretrained={"path": "/nonexistent/model.pt", "format": "semcore"}), "model.pretrained.path"),
    (lambda c: c["model"].update(enc_convs=[2, 2, 2]), "model.enc_convs"),
    (lambda c: c["emergence"].update(steps=[0, 15]), r"emergence.steps: \[15\] are not kept by training"),
])
def test_inconsistent_values_are_refused_naming_the_key(edit, key):
    config = validated(TINY_CONFIG)
    edit(config)
    with pytest.raises(ConfigError, match=key):
        check(config)


def test_emergence_steps_are_the_kept_snapshots_converted_from_epochs():
    config = validated(TINY_CONFIG)  # 30 steps, snapshot_every 10
    assert emergence_steps(config, train_images=192) == [0, 10, 30]
    config["emergence"]["steps"] = None
    assert emergence_steps(config, train_images=192) == [0, 10, 20, 30]
    config["train"] |= {"steps": None, "epochs": 2}  # 192 images, batch 16: 12 steps per epoch
    del config["train"]["steps"]
    assert emergence_steps(config, train_images=192) == [0, 10, 20, 24] and final_step(config, 192) == 24
    config["model"]["pretrained"] = {"path": "model.pt", "format": "semcore"}
    assert emergence_steps(config, train_images=192) == [] and final_step(config, 192) is None
