"""File permissions of what libraries write into a run: as readable as the umask allows, like the run's other files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def umask() -> int:
    """This process's umask, read without changing it where Linux shows it (`os.umask` can only read by setting)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def widen_to_umask(folder: Path) -> None:
    """Give `folder` and everything under it at least the permissions a plain `open` or `mkdir` gives under the
    umask. safetensors creates its files readable by their owner only (0600) and `tempfile.mkdtemp` its folders
    (0700), while a run's other files are readable as the umask allows (0644 under the usual 022): a trained model
    would be the one thing a colleague could not read."""
    mask = umask()
    for path in [Path(folder), *Path(folder).rglob("*")]:
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue
        mode, allowed = path.stat().st_mode & 0o777, (0o777 if path.is_dir() else 0o666) & ~mask
        if mode | allowed != mode:
            path.chmod(mode | allowed)
