"""The workflow passes Snakemake's linter and is formatted as snakefmt formats it (line length in pyproject)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("args", [[], ["--configfile", "configs/study-demo.yaml"]], ids=["run", "study"])
def test_snakemake_lint_finds_nothing(args):
    result = subprocess.run([BIN / "snakemake", "--lint", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_snakefmt_would_change_nothing():
    result = subprocess.run([BIN / "snakefmt", "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
