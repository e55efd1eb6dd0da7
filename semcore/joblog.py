"""The log of a workflow job: `job_log` is the first call of every workflow script. It sends the script's
stderr and logging to the rule's log, headed by what a user needs to debug the job, and ends it with the
wall time and peak memory. No torch: data-only scripts must not pay for it (where a script imports torch,
the header and footer tell its version and GPU memory).
"""

from __future__ import annotations

import atexit
import faulthandler
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LISTED_FILES = 8  # an input of more files than this is summarised, not listed


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _describe(path: str) -> str:
    """A path with its size, or for a folder its number of files and their size."""
    target = Path(path)
    if target.is_dir():
        files = [p for p in target.rglob("*") if p.is_file()]
        return f"{path} (folder: {len(files)} files, {_size(sum(p.stat().st_size for p in files))})"
    if target.is_file():
        return f"{path} ({_size(target.stat().st_size)})"
    return f"{path} (missing)"


def _files(name: str | None, paths, sizes: bool) -> list[str]:
    """Header lines of one input or output: each path (with its size), or a summary of many."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    label = f"{name}: " if name else ""
    if not paths:
        return [f"  {label}none"]
    if len(paths) > LISTED_FILES:  # not one stat each: a folder source may list a million images
        return [f"  {label}{len(paths)} files (first {paths[0]}, last {paths[-1]})"]
    return [f"  {label if i == 0 else ' ' * len(label)}{_describe(path) if sizes else path}"
            for i, path in enumerate(paths)]


def _named(files) -> list[tuple[str | None, list]]:
    """(name, paths) of a Snakemake file list: its named entries, then the unnamed rest."""
    named = list(files.items())
    covered = {path for _, paths in named for path in ([paths] if isinstance(paths, str) else paths)}
    rest = [path for path in files if path not in covered]
    return named + ([(None, rest)] if rest else [])


def _header(smk) -> str:
    versions = f"Python {platform.python_version()}"
    if "torch" in sys.modules:  # only where the script imports it: data-only scripts need not
        versions += f", torch {sys.modules['torch'].__version__}"
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    lines = [f"=== rule {smk.rule}, started {time.strftime('%Y-%m-%d %H:%M:%S')}",
             f"host {platform.node()}, pid {os.getpid()}, {versions}"
             + (f", CUDA_VISIBLE_DEVICES={gpus}" if gpus is not None else ""),
             f"threads {smk.threads}; resources " + ", ".join(f"{k}={v}" for k, v in smk.resources.items()
                                                              if not k.startswith("_"))]
    if len(smk.wildcards):
        lines.append("wildcards " + ", ".join(f"{k}={v}" for k, v in smk.wildcards.items()))
    for title, files in (("input", smk.input), ("output", smk.output)):
        lines.append(f"{title}:")
        for name, paths in _named(files):
            lines += _files(name, paths, sizes=title == "input")
    lines.append("params:")
    lines += [f"  {name}: {value!r}" for name, value in smk.params.items()]
    return "\n".join(lines) + "\n"


class Job:
    """The log of one workflow job (see job_log)."""

    def __init__(self, smk, append: bool):
        self.stream = open(smk.log[0], "a" if append else "w", buffering=1)  # line-buffered: `tail -f` follows
        # The log is this process's stderr, at the file descriptor too: tracebacks, warnings, the C++ and
        # CUDA libraries' messages, a crash's stack (faulthandler), and child processes' errors land in it.
        os.dup2(self.stream.fileno(), 2)
        sys.stderr = self.stream
        faulthandler.enable(self.stream)
        logging.basicConfig(stream=self.stream, level=logging.INFO, format=LOG_FORMAT, force=True)
        self.stream.write(_header(smk))
        self.started, self.failed = time.perf_counter(), False
        previous = sys.excepthook

        def excepthook(kind, error, traceback):
            self.failed = True
            previous(kind, error, traceback)  # the traceback, to stderr: the log

        sys.excepthook = excepthook
        atexit.register(self._footer)

    def _footer(self) -> None:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        # A child's peak counts the parent's pages it was forked with: worth telling only where the work ran
        # in child processes (DDP ranks).
        memory = f"peak memory {_size(own)}" + (f", of a child process {_size(children)}" if children > own else "")
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            memory += f", GPU memory allocated at most {_size(torch.cuda.max_memory_allocated())}"
        outcome = "failed" if self.failed else "finished"
        self.stream.write(f"=== {outcome} after {time.perf_counter() - self.started:.1f} s, {memory}\n")
        self.stream.flush()


def job_log(smk, *, append: bool = False) -> Job:
    """Send this script's stderr and logging (INFO) to the rule's log (`smk` is Snakemake's `snakemake`
    object), after a header: the rule, host, versions, threads, resources, wildcards, each input with its
    size, the outputs, and the params. At exit a footer gives the wall time and peak memory; an uncaught
    exception's traceback precedes it. `append`: keep what the log holds (a resumed job)."""
    return Job(smk, append)
