"""The docs show no command that nothing runs, and link to nothing that is not there.

Every shell code block (```bash, sh, shell, console) of README.md and docs/*.md has, on the line right
before it, one marker (docs/development.md, "Commands in the docs"):

    <!-- tested by: tests/test_x.py::test_name, tests/test_y.py::test_other -->
    <!-- needs: a SLURM cluster; a GPU -->

A `tested by:` test must exist (its file defines it), and the program of each command must be named in
one of the named tests' files; a `needs:` value must be one of NEEDS. Every other fenced block names its
language, and no command hides in an indented block. Every relative link points to a file that exists,
and its #anchor, if any, to a heading of that file.
"""
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO

SHELL = {"bash", "sh", "shell", "console"}
NEEDS = {"a SLURM cluster", "a GPU", "the network", "a long run (minutes or more)"}
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
MARKER = re.compile(r"^\s*<!-- (tested by|needs): (.+?) -->\s*$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# A command at the start of an indented line outside fences: an indented code block.
INDENTED_COMMAND = re.compile(
    r"^(?: {4,}|\t)(?:\$ |\.venv/|make |snakemake |python|semcore |srun |sbatch |pip |pytest )")


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@dataclass
class Block:
    path: Path
    line: int  # 1-based, of the opening fence
    language: str
    body: list[str]
    marker: tuple[str, str] | None  # (kind, value) of the marker on the line before, if any

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def parse(path: Path) -> tuple[list[Block], list[tuple[int, str]]]:
    """The fenced blocks of a Markdown file, and its (line number, text) outside them."""
    lines = path.read_text().splitlines()
    blocks, prose, i = [], [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        fence, end = opening[1], i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        marker = MARKER.match(lines[i - 1]) if i else None
        blocks.append(Block(path, i + 1, opening[2].lower(), lines[i + 1:end],
                            (marker[1], marker[2]) if marker else None))
        i = end + 1
    return blocks, prose


def commands(block: Block) -> list[str]:
    """The commands of a shell block: console lines after `$ `, else every line that is not a comment,
    continuation lines joined; each `&&`-joined part on its own."""
    lines = ([line.strip()[2:] for line in block.body if line.strip().startswith("$ ")]
             if block.language == "console" else [line.strip() for line in block.body])
    joined, pending = [], ""
    for line in lines:
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line and not line.startswith("#"):
            joined += [part.strip() for part in line.split("&&")]
    return joined


def program(command: str) -> str:
    """What a test running this command must name: the `semcore` subcommand, the script or module that
    `python` runs, the make target (as a Python name), or the program itself."""
    words = [w for w in shlex.split(command, comments=True) if not re.match(r"^\w+=", w)]
    name = Path(words[0]).name
    if name in ("python", "python3") and len(words) > 1:
        if words[1] == "-m":
            return "pytest" if words[2] == "pytest" else words[2].rsplit(".", 1)[-1]
        return Path(words[1]).stem
    if name == "semcore":
        return next((w for w in words[1:] if not w.startswith("-")), "semcore")
    if name == "make" and len(words) > 1:
        return words[1].replace("-", "_")
    return name


def named_tests(value: str) -> list[tuple[Path, str]]:
    tests = []
    for item in (part.strip() for part in value.split(",")):
        file, _, name = item.partition("::")
        tests.append((REPO / file, name.split("[")[0]))
    return tests


def defines(file: Path, test: str) -> bool:
    return file.is_file() and re.search(rf"^\s*(?:async\s+)?def {re.escape(test)}\(", file.read_text(), re.M)


def problems_of_command_blocks(path: Path) -> list[str]:
    blocks, prose = parse(path)
    problems = []
    for block in blocks:
        if not block.language:
            problems.append(f"{block.where}: a code block without a language (`text` for output)")
            continue
        if block.language not in SHELL:
            if block.marker:
                problems.append(f"{block.where}: a marker before a {block.language} block, not a shell block")
            continue
        if not block.marker:
            problems.append(f"{block.where}: a {block.language} block with no `<!-- tested by: … -->` or "
                            f"`<!-- needs: … -->` on the line before: {commands(block)}")
            continue
        kind, value = block.marker
        if kind == "needs":
            unknown = [need.strip() for need in value.split(";") if need.strip() not in NEEDS]
            if unknown:
                problems.append(f"{block.where}: needs {unknown}: not one of {sorted(NEEDS)}")
            continue
        tests = named_tests(value)
        missing = [f"{file.relative_to(REPO)}::{name}" for file, name in tests if not name or not defines(file, name)]
        if missing:
            problems.append(f"{block.where}: no such test: {missing}")
            continue
        texts = {file: file.read_text() for file, _ in tests}
        for command in commands(block):
            named = program(command)
            if named == "pytest":
                runs = {REPO / w for w in shlex.split(command) if w.endswith(".py")}
                if not runs <= set(texts):
                    problems.append(f"{block.where}: `{command}` runs {sorted(map(str, runs))}, "
                                    "not a named test's file")
            elif not any(named in text for text in texts.values()):
                problems.append(f"{block.where}: `{command}`: none of the named tests' files mentions {named!r}")
    for number, line in prose:
        if INDENTED_COMMAND.match(line):
            problems.append(f"{path.relative_to(REPO)}:{number}: a command in an indented block: fence it and mark it")
        if MARKER.match(line) and not any(b.line == number + 1 for b in blocks):
            problems.append(f"{path.relative_to(REPO)}:{number}: a marker not right before a code block")
    return problems


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, counts = set(), {}
    for _, line in parse(path)[1]:
        if heading := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            base = slug(heading[1])
            found.add(base if base not in counts else f"{base}-{counts[base]}")
            counts[base] = counts.get(base, 0) + 1
    return found


def problems_of_links(path: Path) -> list[str]:
    problems = []
    for number, line in parse(path)[1]:
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z][\w+.-]*:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(REPO)}:{number}"
            if not linked.exists():
                problems.append(f"{where}: {target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{where}: {target}: no heading #{anchor} in {linked.name}")
    return problems


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_shown_is_run_by_a_named_test_or_marked_as_needing_what_the_suite_lacks(path):
    problems = problems_of_command_blocks(path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_a_file_and_heading_that_exist(path):
    problems = problems_of_links(path)
    assert not problems, "\n".join(problems)


def test_the_docs_are_split_into_pages_the_readme_links():
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md"))
    assert len(pages) >= 6
    readme = (REPO / "README.md").read_text()
    assert not [page for page in pages if f"(docs/{page})" not in readme], "a page the README does not link"
    assert readme.startswith("# semcore\n") and "make demo" in readme.split("```")[1]


def test_the_checks_catch_what_they_are_for(tmp_path, monkeypatch):
    """An unmarked block, an unknown need, a missing test, a test that runs something else, an untyped
    block, an indented command, a dead link and a dead anchor are each reported."""
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_runs_snakemake():\n    snakemake()\n")
    page = tmp_path / "page.md"
    page.write_text("\n".join([
        "# Title", "",
        "```bash", "make demo", "```", "",
        "<!-- needs: a quantum computer -->", "```bash", "make demo", "```", "",
        "<!-- tested by: tests/test_a.py::test_gone -->", "```sh", "snakemake -n", "```", "",
        "<!-- tested by: tests/test_a.py::test_runs_snakemake -->", "```bash",
        ".venv/bin/snakemake -n", ".venv/bin/semcore info model.pt", "```", "",
        "<!-- tested by: tests/test_a.py::test_runs_snakemake -->", "```console",
        "$ snakemake --cores all", "output line", "```", "",
        "```", "output", "```", "",
        "    .venv/bin/snakemake --cores all", "",
        "[gone](missing.md), [here](page.md#title), [not here](page.md#nowhere), [web](https://example.org)",
    ]))
    problems = problems_of_command_blocks(page) + problems_of_links(page)
    expected = ["page.md:3: a bash block with no", "page.md:8: needs ['a quantum computer']",
                "page.md:13: no such test", "page.md:18: `.venv/bin/semcore info model.pt`: none of the named",
                "page.md:29: a code block without a language", "page.md:33: a command in an indented block",
                "page.md:35: missing.md: no such file", "page.md:35: page.md#nowhere: no heading #nowhere"]
    assert len(problems) == len(expected), "\n".join(problems)
    for problem, start in zip(problems, expected):
        assert problem.startswith(start), (problem, start)
