"""Writing outputs so that a killed job never leaves a file that looks complete."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path`, renamed to `path` when the block ends without an error and removed
    when it raises. The name is unique to this process, so two jobs writing the same output (a rerun while
    an orphaned cluster job still runs) never write into one file, and readers see whole files only. The
    temporary name ends in `.tmp`: writers that infer a format from the suffix must be told it."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
