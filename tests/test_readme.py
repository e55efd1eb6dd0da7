"""The docs quote no run number by hand: the generated blocks of README.md and docs/*.md are what the kept
runs render."""
import re
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import readme_runs  # noqa: E402


def test_every_generated_block_is_its_kept_runs():
    found = {(kind, name) for _, kind, name in readme_runs.blocks()}
    assert {("findings", "demo"), ("findings", "structure"), ("findings", "mnist5k"), ("time", "demo")} <= found
    assert ("findings", "demo") in {(k, n) for _, k, n in readme_runs.blocks([REPO / "README.md"])}
    assert readme_runs.differences() == []


@pytest.mark.parametrize("page", [path.relative_to(REPO) for path in readme_runs.documents()
                                  if readme_runs.BLOCK.search(path.read_text())], ids=str)
def test_an_edited_number_is_caught_naming_the_file(tmp_path, page):
    text = (REPO / page).read_text()
    block = next(readme_runs.BLOCK.finditer(text))
    table = block[4].index("|---")  # a number of the table's first row, one digit more
    edited_block = block[4][:table] + re.sub(r"\d+(\.\d+)?", lambda m: "9" + m[0], block[4][table:], count=1)
    edited = text.replace(block[4], edited_block)
    assert edited != text
    (tmp_path / "docs").mkdir()
    copy = tmp_path / page
    copy.write_text(edited)
    assert readme_runs.differences([copy]) == [f"{page.name}: {block[2]} {block[3]}"]
    # --write puts the kept run's numbers back
    assert readme_runs.write([copy]) == [copy] and copy.read_text() == text
    assert readme_runs.differences([copy]) == []


def test_an_unknown_kind_of_block_is_refused():
    with pytest.raises(ValueError, match="unknown generated block"):
        readme_runs.render("plot", "demo")
