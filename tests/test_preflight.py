"""The pre-flight check a user runs on a GPU node: here, on a CPU machine, it must say CUDA is missing."""
import yaml
from snakemake.utils import validate

from semcore import preflight
from semcore.plan.schema import SCHEMA

from conftest import REPO, TINY_CONFIG


def test_on_a_machine_without_cuda_the_check_fails_naming_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    monkeypatch.chdir(tmp_path)
    assert preflight.main(["--configfile", "config.yaml"]) == 1
    out = capsys.readouterr().out
    assert "[ok  ] config" in out and "[FAIL] cuda: torch" in out and "sees no CUDA device" in out
    assert "[ok  ] disk: 240 images" in out and "pre-flight: cuda failed" in out


def test_a_bad_config_fails_first(tmp_path, monkeypatch, capsys):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG | {"data": TINY_CONFIG["data"] | {"size": 18}}))
    monkeypatch.chdir(tmp_path)
    assert preflight.main(["--configfile", "config.yaml"]) == 1
    assert "[FAIL] config: config.yaml: data.size" in capsys.readouterr().out


def test_the_imagenet_outputs_are_estimated_from_the_config():
    config = yaml.safe_load((REPO / "configs" / "imagenet64-cluster.yaml").read_text())
    validate(config, str(SCHEMA))  # the defaults filled in
    need = preflight.output_bytes(config, 1_281_167)
    assert need["phi"] == 1_281_167 * 20 * 512 * 4  # float32 φ at each of the paper's 20 σ: 52 GB
    # cluster.max_images at the one clustered σ, for the snapshots every 100 epochs but the last (φ's own)
    assert need["phi_snapshots"] == 10 * 200_000 * 512 * 4
    assert 12e9 < need["shards"] < 16e9
