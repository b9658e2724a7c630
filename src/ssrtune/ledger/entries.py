"""One entry of the ledger: a folder holding some of a run directory's files at their paths in the run directory,
and entry.json, which records what made them (commit, CPU, precision, torch, wall time, `RESULTS_VERSION`) and the
sha256 of every file. An entry is written whole or not at all (a temporary folder renamed into place); one whose
files don't match their hashes, or can't be parsed, is an error naming the file, never read as a result."""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssrtune.storage.fingerprints import file_sha256
from ssrtune.storage.artifacts import RecordFileError, fsync_dir, iter_jsonl, read_json, write_json

# Bumped when the code gives other results for the same inputs: entries of another version are made again.
RESULTS_VERSION = 1
ENTRY_FILE = "entry.json"
REPO = Path(__file__).resolve().parents[3]  # the checkout ssrtune runs from (src/ssrtune/ledger/entries.py)


class LedgerError(RecordFileError):
    """A ledger file that is missing, damaged or unparsable, or task data that doesn't match the ledger's manifest."""



@functools.cache
def machine() -> dict[str, Any]:
    """What the results depend on besides the inputs: the CPU (its kind: the kernels torch dispatches to, which give
    other float32 results on AVX2 and AVX512), torch's version, and the commit of the code."""
    import torch

    from ssrtune.doctor import cpu_description

    name, flags = cpu_description()
    return {"cpu": {"kind": cpu_kind(), "model_name": name, "flags": flags}, "torch": torch.__version__,
            **commit()}


def cpu_kind() -> str:
    """`avx512`, `avx2`, ... : the CPU capability torch's kernels are chosen by."""
    import torch

    return torch.backends.cpu.get_cpu_capability().lower()


@functools.cache
def commit() -> dict[str, Any]:
    """The checkout's commit and whether its tracked files differ from it (the ledger's own files aside), read once
    per process: the code a long run imported when it started, not what was committed while it ran (`reproduce`
    reads it before its first unit)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results") if head else None
    return {"commit": head, "dirty": bool(status)}


@dataclass(frozen=True)
class Entry:
    """An entry read back and checked: its folder, entry.json's content, and its files by run-directory path."""

    folder: Path
    record: dict[str, Any]

    @property
    def files(self) -> dict[str, str]:
        return self.record["files"]

    @property
    def current(self) -> bool:
        return self.record.get("results_version") == RESULTS_VERSION


def read_entry(folder: Path) -> Entry | None:
    """The entry in `folder` (None where there is none), every file checked against its hash and parsed."""
    path = folder / ENTRY_FILE
    if not path.exists():
        return None
    try:
        record = read_json(path)
        files = record["files"]
        if not isinstance(files, dict):
            raise TypeError("`files` is not a mapping")
    except (ValueError, KeyError, TypeError) as err:
        raise LedgerError(f"{path}: not a ledger entry ({type(err).__name__}: {err})") from err
    for name, digest in files.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:  # it is restored to <run directory>/<name>
            raise LedgerError(f"{path}: file {name!r} is not a path inside a run directory")
        check_file(folder / name, digest)
    return Entry(folder, record)


def check_file(path: Path, digest: str) -> None:
    """A ledger file as its entry recorded it, and readable: else a `LedgerError` naming it."""
    if path.is_symlink():
        raise LedgerError(f"{path}: a symbolic link, not a file of results")
    if not path.is_file():
        raise LedgerError(f"{path}: listed in its entry's {ENTRY_FILE} but missing")
    if file_sha256(path) != digest:
        raise LedgerError(f"{path}: its content is not what its entry recorded (sha256 {digest[:12]}...): damaged "
                          f"or edited; restore it from git (`git checkout -- {path}`) or delete the entry")
    try:
        if path.suffix == ".json":
            read_json(path)
        elif path.suffix == ".jsonl":
            for _ in iter_jsonl(path):
                pass
    except ValueError as err:
        raise LedgerError(f"{path}: unreadable ({err})") from err


def write_entry(folder: Path, root: Path, names: list[str], **fields: Any) -> Entry:
    """An entry of the files `names` of the run directory `root`, with `fields` (wall time, ...) and the machine's,
    written atomically to `folder`: a process killed meanwhile leaves the previous entry or none, never a part."""
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for name in names:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / name, tmp / name)
    finished = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = {"name": folder.name, "results_version": RESULTS_VERSION, **machine(), **fields, "finished": finished,
              "files": {name: file_sha256(tmp / name) for name in sorted(names)}}
    write_json(tmp / ENTRY_FILE, record)
    old = folder.with_name(f".{folder.name}.old{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    fsync_dir(folder.parent)
    for left in [old, *folder.parent.glob(f".{folder.name}.*")]:  # and what a killed writer left
        shutil.rmtree(left, ignore_errors=True)
    return Entry(folder, record)


def same_files(entry: Entry | None, root: Path, names: list[str]) -> bool:
    """Whether `entry` holds exactly the run directory's files `names`, as they are now."""
    return entry is not None and entry.current and set(entry.files) == set(names) and all(
        file_sha256(root / name) == entry.files[name] for name in names)


def record_hash(record: dict) -> str:
    """A task record's content as a hash (the manifest's: the ledger holds no dataset text)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
