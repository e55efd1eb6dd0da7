"""Progress bars, and the log of a workflow job.

`progress` is tqdm: a normal bar when stderr is a terminal; otherwise (a rule's log, a cluster job's log)
one plain line per refresh, at most every SEMCORE_PROGRESS_INTERVAL seconds (default 30), so that a log
read with `less` or `tail` shows how far a job got and how long it has left.

`job_log` is the first call of every workflow script: it sends the script's stderr and logging to the
rule's log, headed by what a user needs to debug the job, and ends it with the wall time and peak memory.

Neither imports torch: data-only scripts must not pay for it.
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

from tqdm import tqdm

INTERVAL_VARIABLE = "SEMCORE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%){postfix}, {elapsed} elapsed, ETA {remaining}"
LINE_FORMAT_NO_TOTAL = "{desc}: {n_fmt} {unit}{postfix}, {elapsed} elapsed"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LISTED_FILES = 8  # an input of more files than this is summarised, not listed

log = logging.getLogger(__name__)


class _Lines:
    """A file for tqdm that turns each redraw ('\\r' + status, padded with spaces) into a line of its own;
    closing redraws the last state, which is not repeated."""

    def __init__(self, stream):
        self.stream, self.last = stream, None

    def write(self, text: str) -> None:
        for line in text.split("\r"):
            line = line.rstrip()
            if line and line != self.last:
                self.stream.write(line + "\n")
                self.last = line

    def flush(self) -> None:
        self.stream.flush()


def interval() -> float:
    """Seconds between two progress lines, from SEMCORE_PROGRESS_INTERVAL."""
    value = os.environ.get(INTERVAL_VARIABLE, DEFAULT_INTERVAL)
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{INTERVAL_VARIABLE}: {value!r} is not a number of seconds") from None


def progress(iterable=None, *, total: int | None = None, desc: str, unit: str, initial: int = 0,
             disable: bool = False) -> tqdm:
    """A tqdm bar on stderr: drawn in place on a terminal, else written as lines such as
    `train: 1200/5000 steps (24%), loss 0.0123, 1:02 elapsed, ETA 3:15`. Use it as tqdm (iterate, or
    `update`; `set_postfix_str(..., refresh=False)` adds to the next line)."""
    if total is None and hasattr(iterable, "__len__"):  # as tqdm would: the format depends on it
        total = len(iterable)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, dynamic_ncols=True)
    # miniters=1: the clock is read at every update, so a loop that slows down still reports on time;
    # position=0: bars open at once would otherwise move the cursor with escape codes.
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable,
                file=_Lines(sys.stderr), mininterval=interval(), miniters=1, position=0,
                bar_format=LINE_FORMAT if total is not None else LINE_FORMAT_NO_TOTAL)


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

    def device(self, device):
        """Log the torch device the script runs on (and, for a GPU, which); returns it."""
        import torch  # the caller has it already: a device is a torch object

        if device.type == "cuda":
            properties = torch.cuda.get_device_properties(device)
            log.info("device %s: %s, %s, CUDA %s", device, properties.name, _size(properties.total_memory),
                     torch.version.cuda)
        else:
            log.info("device %s, %d thread(s)", device, torch.get_num_threads())
        return device

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
