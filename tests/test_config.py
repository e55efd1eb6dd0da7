import dataclasses

import pytest
import yaml
from snakemake.utils import validate as fill_defaults

from semcore.gist import GistConfig
from semcore.plan.checks import check
from semcore.plan.schema import SCHEMA, ConfigError, schema_of, validate
from semcore.plan.settings import TrainConfig, UNetConfig, model_config, train_config
from semcore.plan.sizes import emergence_steps, final_step
from semcore.runtime import Precision
from semcore.sample import Matching, Target

from conftest import REPO, TINY_CONFIG, snakemake, write_config


def validated(config: dict) -> dict:
    """As the workflow takes a config: checked against the schema, then its defaults filled in."""
    config = yaml.safe_load(yaml.safe_dump(config))
    validate(config, SCHEMA)
    fill_defaults(config, str(SCHEMA))
    return config


def refusal(edit) -> str:
    """The message refusing TINY_CONFIG with `edit` applied, by the schema or else by `check`."""
    config = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    edit(config)
    with pytest.raises(ConfigError) as refused:
        check(validated(config))
    message = str(refused.value)
    assert len(message.splitlines()) < 15
    return message


@pytest.mark.parametrize("path", ["config.yaml", *sorted(p.name for p in (REPO / "configs").glob("*.yaml")
                                                  if not p.name.startswith("study-"))])  # tests/test_study.py
def test_shipped_configs_are_valid(path):
    file = REPO / path if path == "config.yaml" else REPO / "configs" / path
    config = validated(yaml.safe_load(file.read_text()))
    if config["data"]["source"] == "imagenet64":  # its npz paths are placeholders to fill in
        with pytest.raises(ConfigError, match="data.imagenet64.paths: not found"):
            check(config)
    else:
        check(config)


def test_the_tiny_test_config_is_valid():
    check(validated(TINY_CONFIG))


# Every settings dataclass whose fields are config keys: its section, and its fields the config names otherwise.
SETTINGS = [(UNetConfig, "model", {"in_channels": "data.channels"}), (TrainConfig, "train", {"device": "device"}),
            (Precision, "precision", {}), (GistConfig, "gist", {}), (Matching, "sample.matching", {}),
            (Target, "sample", {})]


@pytest.mark.parametrize("settings, section, renamed", SETTINGS, ids=[s[0].__name__ for s in SETTINGS])
def test_the_dataclass_defaults_are_the_schemas(settings, section, renamed):
    """One source of defaults: a field that is a config key defaults to the schema's default, or to None
    where the schema has none (a key a filled config lacks)."""
    keys = {name: f"{section}.{name}" for name in schema_of(section)["properties"]} | renamed
    fields = [field for field in dataclasses.fields(settings) if field.name in keys]
    assert fields
    for field in fields:
        value = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
        assert value == schema_of(keys[field.name]).get("default"), f"{settings.__name__}.{field.name}"


def test_the_python_defaults_are_the_workflows():
    config = validated({"name": "defaults", "data": {"source": "synthetic"}})
    assert model_config(config) == UNetConfig() and train_config(config) == TrainConfig()


def test_the_paper_configuration_builds_the_authors_model():
    config = validated(yaml.safe_load((REPO / "configs" / "imagenet64-cluster.yaml").read_text()))
    model = model_config(config)
    assert model.channels == [64, 128, 256, 512] and model.dec_convs == [5, 6, 7]


@pytest.mark.parametrize("edit, line", [
    (lambda c: c.update(nmae="x"), "config: unknown key 'nmae' (did you mean 'name'?)"),
    (lambda c: c["phi"].update(sigmass=[0.1]), "phi: unknown key 'sigmass' (did you mean 'sigmas'?)"),
    (lambda c: c["phi"].update(xyz=1), "phi: unknown key 'xyz' (allowed: sigmas, n_noise, seed, batch_images, shards_per_job)"),
    (lambda c: c["train"].update(lr="fast"), 'train.lr: must be a number > 0, got "fast"'),
    (lambda c: c["train"].update(lr="1e-3"), 'train.lr: must be a number > 0, got "1e-3" (YAML reads this as text: '
                                             'write a decimal point and a signed exponent, 1.0e-3 or 1.0e+3)'),
    (lambda c: c["phi"].update(sigmas=[0.0, -0.1]), "phi.sigmas[1]: must be a number ≥ 0, got -0.1"),
    (lambda c: c["stats"].update(sigma=-0.1), "stats.sigma: must be a number ≥ 0, got -0.1"),
    (lambda c: c["train"].update(sigma_min=-0.1), "train.sigma_min: must be a number ≥ 0, got -0.1"),
    (lambda c: c["train"].update(sigma_max=0), "train.sigma_max: must be a number > 0, got 0"),
    (lambda c: c["sample"]["ascent"].update(sigma_0=-1), "sample.ascent.sigma_0: must be a number > 0, got -1"),
    (lambda c: c["sample"].update(unconditional={"sigma_final": -1}),
     "sample.unconditional.sigma_final: must be a number > 0, got -1"),
    (lambda c: c["phi"].update(n_noise=0), "phi.n_noise: must be an integer ≥ 1, got 0"),
    (lambda c: c["cluster"].update(ks=[4, 1]), "cluster.ks[1]: must be an integer ≥ 2, got 1"),
    (lambda c: c["cluster"].update(ks=[]), "cluster.ks: must be a list (at least 1 item; no repeats; each an integer ≥ 2), got []"),
    (lambda c: c["data"].update(test_fraction=0), "data.test_fraction: must be a number > 0 and < 1, got 0"),
    (lambda c: c["data"].update(source="mnist"), 'data.source: must be one of synthetic, mnist5k, patches, folder, '
                                                 "imagenet64, mixture, got \"mnist\" (did you mean 'mnist5k'?)"),
    (lambda c: c["sample"].update(unconditional="author"),
     "sample.unconditional: must be one of authors, ascent or a mapping, got \"author\" (did you mean 'authors'?)"),
    (lambda c: c["sample"].update(targets="all"),
     'sample.targets: must be an integer ≥ 1 or a list (at least 1 item; no repeats; each a string), got "all"'),
    (lambda c: c["model"].update(pretrained={"path": "model.pt"}), "model.pretrained.format: missing (required)"),
    (lambda c: c.pop("data"), "data: missing (required)"),
    (lambda c: c.update(name=".."), 'name: must be a string matching ^[A-Za-z0-9_-][A-Za-z0-9_.-]*$, got ".." (run '
                                    "name: letters, digits, _ . -, not starting with a dot; outputs land in results/<name>/)"),
])
def test_a_schema_error_names_the_key_what_it_allows_and_the_value(edit, line):
    assert refusal(edit).splitlines()[1:] == [f"  {line}"]


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "../up", ""])
def test_a_name_cannot_leave_results(name):
    assert "  name: must be a string matching" in refusal(lambda c: c.update(name=name))


def test_every_schema_error_is_listed_at_once():
    def edit(config):
        config["phi"] |= {"sigmass": [0.1], "n_noise": 0}
        config["train"]["lr"] = "fast"
        config["cluster"]["ks"] = [4, 1]

    assert refusal(edit).splitlines() == [
        f"4 invalid setting(s) in the config ({SCHEMA} documents each key):",
        '  train.lr: must be a number > 0, got "fast"',
        "  phi: unknown key 'sigmass' (did you mean 'sigmas'?)",
        "  phi.n_noise: must be an integer ≥ 1, got 0",
        "  cluster.ks[1]: must be an integer ≥ 2, got 1",
    ]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["data"].update(size=18), "data.size: 18 must be divisible by 2^2 (the UNet pools 2 times)"),
    (lambda c: c["data"].update(source="folder", folder={"path": "/nonexistent"}),
     "data.folder.path: '/nonexistent' does not exist"),
    (lambda c: c["data"].update(source="imagenet64", imagenet64={"paths": ["/nonexistent.npz"]}),
     "data.imagenet64.paths: not found: ['/nonexistent.npz']"),
    (lambda c: c["model"].update(pretrained={"path": "/nonexistent/model.pt", "format": "semcore"}),
     "model.pretrained.path: /nonexistent/model.pt is not a file (format semcore: a model.pt this package wrote; "
     "authors: their folder with model.pt, or its model.pt)"),
    (lambda c: c["cluster"].update(ks=[4, 500]),
     "cluster.ks: k=500 is more than the 240 images of data.source synthetic; k-means needs k ≤ 240"),
    (lambda c: c["cluster"].update(ks=[4, 50], max_images=20),
     "cluster.ks: k=50 is more than cluster.max_images 20; k-means needs k ≤ 20"),
    (lambda c: c["data"].update(source="mnist5k", size=32, min_size=28) or c["cluster"].update(ks=[5001]),
     "cluster.ks: k=5001 is more than the 5000 images of data.source mnist5k; k-means needs k ≤ 5000"),
    (lambda c: c["sample"].update(targets=300),
     "sample.targets: 300 is more than the 240 images of data.source synthetic (targets are the first test images: about 48)"),
    (lambda c: c["data"].update(source="mnist5k", size=32),
     "data.min_size: mnist5k's digits are 28×28, below min_size 32 (null: data.size): give min_size ≤ 28 to upsample them"),
    (lambda c: c["data"].update(source="patches", patches={"crop_min": 8, "crop_max": 12}),
     "data.patches.crop_max: 12 is below data.min_size 16 (null: data.size): every crop would be skipped"),
    (lambda c: c["model"].update(kernel_size=4),
     "model.kernel_size: 4 must be odd (only then does a conv padded by kernel_size // 2 keep the image size)"),
    (lambda c: c["train"].update(processes=3),
     "train.batch_size: 16 (the global batch) does not split evenly between train.processes 3"),
    (lambda c: c["sample"]["schedule"].update(sigma_min=0.9),
     "sample.schedule.sigma_min: 0.9 is above sigma_max 0.5 (the schedule descends from sigma_max to sigma_min)"),
    (lambda c: c["sample"]["ascent"].update(sigma_final=0.9),
     "sample.ascent.sigma_final: 0.9 must be below sigma_0 0.5 (the ascent removes noise from sigma_0 down to sigma_final)"),
])
def test_an_inconsistency_is_refused_naming_the_key_and_what_is_allowed(edit, message):
    assert refusal(edit) == message


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["train"].update(loss_weighting="inv_sigma_squared", sigma_min=0.0), "train.sigma_min"),
    (lambda c: c["train"].update(epochs=10), "train.steps, train.epochs"),
    (lambda c: c["train"].update(lr_halve_every=5, lr_halve_every_epochs=1), "train.lr_halve_every, train.lr_halve_every_epochs"),
    (lambda c: c["model"].update(enc_convs=[2, 2, 2]), "model.enc_convs"),
    (lambda c: c["emergence"].update(steps=[0, 15]), r"emergence.steps: \[15\] are not kept by training"),
])
def test_inconsistent_values_are_refused_naming_the_key(edit, key):
    config = validated(TINY_CONFIG)
    edit(config)
    with pytest.raises(ConfigError, match=key):
        check(config)


def test_an_unknown_photograph_is_refused_with_the_bundled_ones():
    message = refusal(lambda c: c["data"].update(source="patches", patches={"images": ["astronot"]}))
    assert message.startswith("data.patches.images: unknown 'astronot' (did you mean 'astronaut'?); bundled: astronaut, ")


def test_a_folders_files_bound_k_and_an_empty_folder_is_refused_a_one_image_label_warned_of(tmp_path):
    config = validated(TINY_CONFIG)
    config["data"] |= {"source": "folder", "folder": {"path": str(tmp_path)}}
    config["cluster"]["ks"] = [4]
    with pytest.raises(ConfigError, match="data.folder.path: .* holds no readable files"):
        check(config)
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.png").write_bytes(b"listed, not decoded")
    with pytest.warns(UserWarning, match="label 'cats' has 1 image"), pytest.raises(ConfigError, match="cluster.ks"):
        check(config)
    for name in ("b.png", "c.png"):
        (tmp_path / "cats" / name).write_bytes(b"listed, not decoded")
    with pytest.raises(ConfigError, match="cluster.ks: k=4 is more than the 3 images of data.source folder"):
        check(config)
    config["cluster"]["ks"] = [3]
    check(config)


@pytest.mark.parametrize("edit, lines", [
    ({"phi": {"sigmass": [0.1]}, "train": {"lr": "fast"}},
     ["phi: unknown key 'sigmass' (did you mean 'sigmas'?)", 'train.lr: must be a number > 0, got "fast"']),
    ({"cluster": {"sigmas": [0.1], "ks": [4, 500]}},
     ["cluster.ks: k=500 is more than the 240 images of data.source synthetic; k-means needs k ≤ 240"]),
])
def test_a_bad_config_stops_the_workflow_in_a_few_lines_before_any_job(tmp_path, edit, lines):
    write_config(tmp_path, TINY_CONFIG | edit)
    result = snakemake(tmp_path, "--dry-run", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and len(out.splitlines()) < 15, out
    assert all(line in out for line in lines), out
    assert not (tmp_path / "results").exists()


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
