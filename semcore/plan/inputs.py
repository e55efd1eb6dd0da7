"""The inputs of a folder source, listed without decoding them, and the names of the bundled photographs.

The rules declare a folder's files as inputs and check it (each label's count) when the workflow is planned:
listing only, no image is opened here (semcore.sources decodes them).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path

SKIMAGE_PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina",
                       "immunohistochemistry", "camera", "brick", "grass", "gravel", "moon", "coins", "clock")
SKLEARN_PHOTOGRAPHS = ("china", "flower")
PHOTOGRAPHS = SKIMAGE_PHOTOGRAPHS + SKLEARN_PHOTOGRAPHS


def list_folder(root: Path) -> list[Path]:
    """Every entry under root that a manifest accounts for, sorted by relative path: files, and what sits
    where files do without being one (broken symlinks, symlink loops, special files, folders that could not
    be listed). Symlinked folders are followed; a folder already walked (an alias, a loop) is not again."""
    if not root.is_dir():
        raise FileNotFoundError(f"data.folder.path: {str(root)!r} is not a directory")
    entries, walked = [], {_identity(root)}
    for folder_path, folders, files in os.walk(root, onerror=lambda error: entries.append(Path(error.filename)),
                                               followlinks=True):
        # Real folders before symlinks to them: their files keep the real path, and its label.
        folders.sort(key=lambda name: (os.path.islink(os.path.join(folder_path, name)), name))
        folders[:] = [name for name in folders if _first_walk(Path(folder_path, name), walked)]
        entries += [Path(folder_path, name) for name in files]
    return sorted(entries, key=lambda entry: entry.parts)


def input_files(root: Path) -> list[Path]:
    """The files `folder` can read: regular, readable, not hidden. The workflow declares them as inputs
    (Snakemake stops on a declared input that is missing, such as a broken symlink)."""
    return [entry for entry in list_folder(root)
            if not hidden_reason(entry.relative_to(root)) and entry.is_file() and os.access(entry, os.R_OK)]


def check_folder(path: str, key: str = "data.folder.path", labelled: bool = True) -> None:
    """Refuse a folder that cannot give a run, naming its config key, cheaply enough for when the workflow is
    planned: files are listed, not decoded. Where its sub-folders are the labels (`labelled`; a mixture's
    part is labelled by the part), a label of one file gives a run, with a warning: the label scores and the
    gist classifier leave it out (semcore.scores.semantic_targets, semcore.gist.gist_targets)."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{key}: {path!r} {'is not a directory' if root.exists() else 'does not exist'}")
    files = input_files(root)
    if not files:
        raise ValueError(f"{key}: {path!r} holds no readable files (hidden ones do not count)")
    if not labelled:
        return
    per_label = Counter(label_name(file.relative_to(root)) for file in files)
    lonely = [f"label {name!r} has 1 image" for name, count in sorted(per_label.items()) if name and count == 1]
    if lonely:
        warnings.warn(f"{key}: {', '.join(lonely)}; the label scores and the gist classifier need ≥ 2 "
                      "per label and leave it out: add images or remove the folder", stacklevel=2)


def declared_files(source: str, options: dict) -> list[str]:
    """The files on disk that a source (`data.source`, options `data.<source>`) reads, for the rules to
    declare: a folder's readable files, ImageNet64's batches, those of a mixture's parts."""
    if source == "folder":
        return [str(file) for file in input_files(Path(options["path"]))]
    if source == "imagenet64":
        return list(options["paths"])
    if source == "mixture":  # two parts may read the same files: each is declared once
        return list(dict.fromkeys(file for part in options["parts"] for file in declared_files(part["source"], part)))
    return []


def hidden_reason(relative: Path) -> str | None:
    hidden_folders = [part for part in relative.parts[:-1] if part.startswith(".")]
    if hidden_folders:
        return f"in hidden folder {printable(hidden_folders[0])}"
    return "hidden file" if relative.name.startswith(".") else None


def label_name(relative: Path) -> str:
    """The first sub-folder, unless hidden; "" for files at the top."""
    first = relative.parts[0] if len(relative.parts) > 1 else ""
    return "" if first.startswith(".") else printable(first)


def printable(name: str | Path) -> str:
    """A name as text Parquet and JSON can hold: bytes that are not UTF-8 become \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _identity(folder: Path) -> tuple[int, int]:
    info = folder.stat()
    return info.st_dev, info.st_ino


def _first_walk(folder: Path, walked: set[tuple[int, int]]) -> bool:
    try:
        identity = _identity(folder)
    except OSError:
        return True  # os.walk reports it through onerror
    if identity in walked:
        return False
    walked.add(identity)
    return True
