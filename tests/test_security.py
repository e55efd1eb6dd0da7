"""Nothing a config, a checkpoint or a shard holds can run code or write outside the results folder."""
import ast
import pickle
import re

import pytest
import torch

from semcore.gist import GistNet
from semcore.model import UNetFlex

from conftest import REPO

CODE = [*(REPO / "semcore").glob("*.py"), *(REPO / "workflow_scripts").glob("*.py")]


def calls(name: str):
    """(file, call) for every call of `name` (e.g. "torch.load") in semcore and the workflow scripts."""
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                yield path.name, node


def test_every_checkpoint_is_loaded_with_weights_only():
    loads = list(calls("torch.load"))
    assert loads  # the scan sees them
    for file, call in loads:
        keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
        assert keywords.get("weights_only") == "True", f"{file}:{call.lineno}: torch.load without weights_only=True"


def test_no_shell_runs_user_strings():
    rules = [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]
    assert not [p.name for p in rules if re.search(r"^\s+(shell|run):", p.read_text(), re.M)]  # scripts only
    for name in ("subprocess.run", "subprocess.Popen", "subprocess.call", "subprocess.check_call",
                 "subprocess.check_output", "os.system", "os.popen"):
        for file, call in calls(name):
            assert name.startswith("subprocess."), f"{file}:{call.lineno}: {name}"
            assert isinstance(call.args[0], (ast.List, ast.Name)), f"{file}:{call.lineno}: a command string"
            assert all(k.arg != "shell" for k in call.keywords), f"{file}:{call.lineno}: shell=True"


class Payload:
    """Unpickling this would run a command."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('ran')",))


@pytest.mark.parametrize("loader", [UNetFlex.from_pretrained, GistNet.load])
def test_a_checkpoint_holding_code_is_refused_and_never_runs(tmp_path, monkeypatch, loader):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model.pt"
    torch.save({"config": {}, "state_dict": {}, "extra": Payload()}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        loader(path)
    assert not (tmp_path / "PWNED").exists()
