"""The README quotes no run number by hand: its generated blocks are what the kept runs render."""
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import readme_runs  # noqa: E402


def test_every_generated_block_of_the_readme_is_its_kept_runs():
    text = (REPO / "README.md").read_text()
    blocks = [(m[2], m[3]) for m in readme_runs.BLOCK.finditer(text)]
    assert {("findings", "demo"), ("findings", "structure"), ("findings", "mnist5k"), ("time", "demo")} <= set(blocks)
    assert readme_runs.differences() == []


def test_an_edited_number_is_caught(tmp_path):
    text = (REPO / "README.md").read_text()
    block = next(readme_runs.BLOCK.finditer(text))
    edited = text.replace(block[4], block[4].replace("|", "| 0.999", 1))
    (tmp_path / "README.md").write_text(edited)
    assert readme_runs.differences(tmp_path / "README.md") == [f"{block[2]} {block[3]}"]
    with pytest.raises(ValueError, match="unknown generated block"):
        readme_runs.render("plot", "demo")
