"""Crash-safe artifacts and the one cache rule of every stage.

Every stage writes its records through `RecordFile`. A batch of records is JSON lines written with one `write`
and flushed to disk; a crash can only leave a torn *last* line, which the next open detects and cuts off. A write
that fails (a full disk) is cut back to the last whole record at once. Whole files are written atomically.
Renames and new files are made durable by fsyncing their folder, so a power loss cannot undo them. Whatever a
stage makes, records or a whole file or folder, is an `Artifact`: reused only under the fingerprint of the inputs
and settings it was made with, recorded in a sidecar beside it, so a resumed run never mixes results made under
different settings.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)


class StaleArtifactError(RuntimeError):
    pass


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (settings, file hashes, model ids)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """A short hash of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable: its name lives in the folder, which fsyncing the file does
    not write. POSIX only; Windows cannot open a folder, and its renames are durable once they return."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, path: Path) -> None:
    """Write `data` at the descriptor's position and fsync it. `os.write` writes all of it at once but for a full disk
    (or a signal), where it writes a part or raises; an error is given the file's name, which `os.write` leaves out."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as err:
        err.filename = err.filename or str(path)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary name in the same folder, then rename: readers see the old file or the new one.

    A failed write (a full disk) removes the temporary file and leaves the old one as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            _write_all(fd, text.encode("utf-8"), path)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    for stale in path.parent.glob(f".{path.name}.tmp*"):  # left by a process killed before its rename
        stale.unlink(missing_ok=True)


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
    """Give every file under `folder` at least the permissions a plain `open` gives under the umask. safetensors
    creates its files readable by their owner only (0600), while a run's other files are readable as the umask
    allows (0644 under the usual 022): a trained model would be the one thing a colleague could not read."""
    allowed = 0o666 & ~umask()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            mode = path.stat().st_mode & 0o777
            if mode | allowed != mode:
                path.chmod(mode | allowed)


def write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


class BadLine(ValueError):
    """Why one line of a JSONL file can't be read (not UTF-8, or not JSON)."""


def jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, the parsed line or the `BadLine` saying why it can't be read) for every non-blank line of a
    JSONL file, gzipped when its name ends in .gz. Bytes are decoded line by line, so a bad line is located by its
    number and the others stay readable; the caller decides whether a bad line stops it."""
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:  # editors on Windows start UTF-8 files with a byte order mark
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield number, BadLine(f"not UTF-8 text ({err.reason} at column {err.start + 1})")
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                yield number, BadLine(f"invalid JSON ({err.msg} at column {err.colno})")


def iter_jsonl(path: Path) -> Iterator[dict]:
    """The rows of a JSONL file ssrtune wrote; a line that can't be read stops it, naming the file and the line."""
    for number, row in jsonl_rows(path):
        if isinstance(row, BadLine):
            raise BadLine(f"{path}, line {number}: {row}")
        yield row


class Artifact:
    """The one cache rule of every stage: what a stage made (a file or a folder) is reused only under the
    fingerprint it was made with, which a JSON sidecar beside it records (with a summary of what was made).

    When the recorded fingerprint differs, the stage's resume rule decides: `redo` remakes the artifact (cheap,
    deterministic ones: the task data), `refuse` stops with `StaleArtifactError` (costly ones, records and trained
    models, whose loss the user must choose with `--fresh`). `fresh=True` discards the artifact and its sidecar.
    """

    def __init__(self, path: Path | None, sidecar: Path, fingerprint: str, on_change: Literal["redo", "refuse"],
                 fresh: bool = False):
        self.path, self.sidecar, self.fingerprint, self.on_change = path, Path(sidecar), fingerprint, on_change
        if fresh:
            self.discard()

    @property
    def recorded(self) -> dict | None:
        """The sidecar: the fingerprint the artifact was made with and its summary; None when there is none."""
        return read_json(self.sidecar) if self.sidecar.exists() else None

    @property
    def current(self) -> bool:
        recorded = self.recorded
        return recorded is not None and recorded.get("fingerprint") == self.fingerprint

    def check(self) -> None:
        """Under `refuse`, stop when the artifact exists and was made with other inputs or settings."""
        if self.path is not None and not self.path.exists():
            return
        old = (self.recorded or {}).get("fingerprint", self.fingerprint)
        if self.on_change == "refuse" and old != self.fingerprint:
            raise StaleArtifactError(f"{self.path or self.sidecar} was made with other inputs or settings "
                                     f"(fingerprint {old}, now {self.fingerprint}); rerun with --fresh to discard it")

    def record(self, **summary: Any) -> None:
        write_json(self.sidecar, {"fingerprint": self.fingerprint, **summary})

    def discard(self) -> None:
        if self.path is not None and self.path.is_dir():
            shutil.rmtree(self.path)
        elif self.path is not None:
            self.path.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)


def recorded_fingerprint(path: Path) -> str:
    """The settings fingerprint a `RecordFile` was written under: stable while the file grows by resuming."""
    return read_json(Path(path).with_name(Path(path).name + ".meta.json"))["fingerprint"]


class RecordFile:
    """An append-only JSONL file of records keyed by `id`, resumable and guarded by a fingerprint.

    `fresh=True` discards existing records; otherwise a fingerprint mismatch raises `StaleArtifactError`.
    """

    def __init__(self, path: Path, fingerprint: str, fresh: bool = False):
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".meta.json")
        self.fingerprint = fingerprint
        self.path.parent.mkdir(parents=True, exist_ok=True)
        artifact = Artifact(self.path, self.meta_path, fingerprint, "refuse", fresh)
        if self.path.exists() and self.path.stat().st_size and not self.meta_path.exists():
            # The sidecar is written before the first record, so records without one were not made by this run.
            raise StaleArtifactError(f"{self.path} has records but no fingerprint ({self.meta_path.name}); "
                                     "rerun with --fresh to discard them")
        artifact.check()
        self.records: dict[str, dict] = self._load() if self.path.exists() else {}
        if not artifact.current:  # written only when it changes: a stage that only reads its records writes nothing
            artifact.record()

    def _load(self) -> dict[str, dict]:
        data = self.path.read_bytes()
        records: dict[str, dict] = {}
        good_end = 0
        for line in data.splitlines(keepends=True):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("no newline")
                record = json.loads(line)
            except ValueError:
                # Only the last line can be torn by a crash, since each record is one write.
                log.warning("%s: discarding a torn last record (%d bytes) left by an interrupted run",
                            self.path, len(data) - good_end)
                with open(self.path, "r+b") as handle:
                    handle.truncate(good_end)
                break
            good_end += len(line)
            records[record["id"]] = record
        return records

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.records

    def __len__(self) -> int:
        return len(self.records)

    def append(self, records: Iterable[dict]) -> None:
        """Write `records` in one `write` and fsync them; they count as written only once that succeeded."""
        new: dict[str, dict] = {}
        for record in records:
            if record["id"] in self.records or record["id"] in new:
                raise ValueError(f"{self.path}: id {record['id']!r} is already written")
            new[record["id"]] = record
        if not new:
            return
        data = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in new.values()).encode("utf-8")
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.fstat(fd).st_size
            try:
                _write_all(fd, data, self.path)
            except BaseException:
                # A full disk can take part of the batch: cut it, so the file still ends on a whole record.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end)
                raise
        finally:
            os.close(fd)
        if created:  # resuming depends on this file being found
            fsync_dir(self.path.parent)
        self.records.update(new)
