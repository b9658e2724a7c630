"""Opening the files ssrtune writes without following a symbolic link: a link planted in a run directory (at the run
lock, at a record file) would make a write, or a truncation, land on its target wherever that is."""

from __future__ import annotations

import os
from pathlib import Path


class UnsafePathError(RuntimeError):
    """A file ssrtune writes is a symbolic link."""


# POSIX; Windows has no O_NOFOLLOW (its symbolic links need privileges to create).
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def refuse_link(path: Path) -> None:
    """Stop when `path` is a symbolic link: a write would land on its target, wherever that is."""
    if os.path.islink(path):
        raise UnsafePathError(f"{path} is a symbolic link; ssrtune does not write through links: remove it")


def open_nofollow(path: Path, flags: int, mode: int = 0o666) -> int:
    """`os.open` that refuses a symbolic link at `path`."""
    try:
        return os.open(path, flags | NOFOLLOW, mode)
    except OSError:
        refuse_link(path)
        raise
