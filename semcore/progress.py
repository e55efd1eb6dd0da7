"""Progress bars: tqdm, a normal bar when stderr is a terminal; otherwise (a rule's log, a cluster job's log)
one plain line per refresh, at most every SEMCORE_PROGRESS_INTERVAL seconds (default 30), so that a log
read with `less` or `tail` shows how far a job got and how long it has left."""

from __future__ import annotations

import logging
import os
import sys

from tqdm import tqdm

INTERVAL_VARIABLE = "SEMCORE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%){postfix}, {elapsed} elapsed, ETA {remaining}"
LINE_FORMAT_NO_TOTAL = "{desc}: {n_fmt} {unit}{postfix}, {elapsed} elapsed"

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
