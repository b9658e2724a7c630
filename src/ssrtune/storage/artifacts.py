"""Crash-safe artifacts and the one cache rule of every stage.

Every stage writes its records through `RecordFile`. A batch of records is JSON lines written with one `write`
and flushed to disk; a crash can only leave a torn *last* line, which the next open detects and cuts off; a bad line
anywhere else is damage no crash makes, and stops the open without changing the file. A write that fails (a full
disk) is cut back to the last whole record at once. Files are opened without following a symbolic link, so a link
planted in a run directory cannot redirect a write. Whole files are written atomically. Renames and new files are
made durable by fsyncing their folder, so a power loss cannot undo them. Whatever a stage makes, records or a whole
file or folder, is an `Artifact`: reused only under the fingerprint of the parts it was made from, recorded in a
sidecar beside it, so a resumed run never mixes results made under different settings, and a stale one says what
changed.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ssrtune.storage.fingerprints import Parts, changes, parts_hash, recorded_parts
from ssrtune.storage.nofollow import open_nofollow, refuse_link

log = logging.getLogger(__name__)


class StaleArtifactError(RuntimeError):
    """An artifact made from other parts than asked for, refused: the message names what changed."""


class RecordFileError(RuntimeError):
    """A record file damaged other than by a crash (a bad line before its last, a record without an `id`)."""


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
        fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
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
            except RecursionError:
                yield number, BadLine("JSON nested too deeply to read")


def iter_jsonl(path: Path) -> Iterator[dict]:
    """The rows of a JSONL file ssrtune wrote; a line that can't be read stops it, naming the file and the line."""
    for number, row in jsonl_rows(path):
        if isinstance(row, BadLine):
            raise BadLine(f"{path}, line {number}: {row}")
        yield row


@dataclass
class CacheRule:
    """What a stage does with what it made before, set by the run (`stages.base.Run.rule`): `fresh` discards it;
    one made from other parts is remade if the artifact is of the `redo` kind or `redo_stale` (`ssrtune run`),
    telling `redone` why, and refused otherwise, naming what changed and `redo_hint` (the commands that redo it)."""

    fresh: bool = False
    redo_stale: bool = False
    redo_hint: str = "rerun with --fresh to discard it"
    redone: Callable[[Path | None, list[str]], None] = lambda path, reasons: None


class Artifact:
    """The one cache rule of every stage: what a stage made (a file or a folder) is reused only under the hash of
    the parts it was made from (`fingerprints`), which a JSON sidecar beside it records with the parts themselves
    and a summary of what was made. When they differ, its kind decides by default: `redo` remakes it (cheap ones:
    the task data, evaluation verdicts), `refuse` stops with `StaleArtifactError` (costly ones: records, trained
    models) unless the `CacheRule` redoes stale work. `parts` may be a bare hash (records opened under the
    fingerprint they were written with)."""

    def __init__(self, path: Path | None, sidecar: Path, parts: Parts | str, on_change: Literal["redo", "refuse"],
                 rule: CacheRule | None = None):
        self.path, self.sidecar, self.parts, self.on_change = path, Path(sidecar), parts, on_change
        self.fingerprint = parts if isinstance(parts, str) else parts_hash(parts)
        self.rule = rule or CacheRule()
        if self.rule.fresh:
            self.discard()

    @property
    def recorded(self) -> dict | None:
        """The sidecar: the fingerprint the artifact was made with, its parts and summary; None when there is none."""
        return read_json(self.sidecar) if self.sidecar.exists() else None

    @property
    def current(self) -> bool:
        recorded = self.recorded
        return recorded is not None and recorded.get("fingerprint") == self.fingerprint

    def check(self) -> None:
        """Remake a stale artifact (discarding it, and telling the rule why) or refuse it, by its kind and the rule.
        A current one made by an earlier version gets its parts recorded, so that a later change can be named."""
        recorded = self.recorded
        if recorded is None or (self.path is not None and not self.path.exists()):
            return
        if recorded.get("fingerprint") == self.fingerprint:
            if "parts" not in recorded and not isinstance(self.parts, str):
                write_json(self.sidecar, {**recorded, "parts": recorded_parts(self.parts)})
            return
        reasons = ([f"made with other inputs or settings (fingerprint {recorded.get('fingerprint')}, now "
                    f"{self.parts})"] if isinstance(self.parts, str) else changes(recorded, self.parts))
        if self.on_change == "refuse" and not self.rule.redo_stale:
            raise StaleArtifactError(f"{self.path or self.sidecar} is out of date: {'; '.join(reasons)}. "
                                     f"{self.rule.redo_hint}")
        self.discard()
        self.rule.redone(self.path, reasons)

    def record(self, **summary: Any) -> None:
        parts = {} if isinstance(self.parts, str) else {"parts": recorded_parts(self.parts)}
        write_json(self.sidecar, {"fingerprint": self.fingerprint, **parts, **summary})

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
    """An append-only JSONL file of records keyed by `id`, resumable, and an `Artifact` of the parts it is made
    from (sidecar: <name>.meta.json); `rule` says whether stale records are discarded or refused."""

    def __init__(self, path: Path, parts: Parts | str, rule: CacheRule | None = None,
                 on_change: Literal["redo", "refuse"] = "refuse"):
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".meta.json")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        refuse_link(self.path)
        artifact = Artifact(self.path, self.meta_path, parts, on_change, rule)
        self.fingerprint = artifact.fingerprint
        if self.path.exists() and self.path.stat().st_size and not self.meta_path.exists():
            # The sidecar is written before the first record, so records without one were not made by this run.
            raise StaleArtifactError(f"{self.path} has records but no fingerprint ({self.meta_path.name}); "
                                     "rerun with --fresh to discard them")
        artifact.check()
        self.records: dict[str, dict] = self._load() if self.path.exists() else {}
        if not artifact.current:  # written only when it changes: a stage that only reads its records writes nothing
            artifact.record()

    def _load(self) -> dict[str, dict]:
        """The records on disk, read line by line. Each batch is one `write`, so a crash can tear only the last line
        (no newline yet, or cut inside): that line is cut off. A bad line before the last is not a crash's doing:
        it stops the load, naming the line, and nothing is deleted."""
        records: dict[str, dict] = {}
        good_end, torn = 0, None
        fd = open_nofollow(self.path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if torn is not None:  # the bad line was not the last
                    raise RecordFileError(f"{self.path}, line {torn[0]}: {torn[1]}; only a last line can be torn by "
                                          "a crash, so the file is left as it is: repair or delete that line, or "
                                          "rerun with --fresh to discard every record")
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("no newline at its end")
                    record = json.loads(line)
                except (ValueError, RecursionError) as err:  # not UTF-8, not JSON, nested past the parser's limit
                    torn = number, f"unreadable ({type(err).__name__}: {str(err)[:80]})"
                    continue
                if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                    raise RecordFileError(f"{self.path}, line {number}: not a record with a string `id`")
                if record["id"] in records:
                    raise RecordFileError(f"{self.path}, line {number}: id {record['id']!r} is written twice")
                good_end += len(line)
                records[record["id"]] = record
        if torn is not None:
            log.warning("%s: discarding a torn last record (line %d, %d bytes) left by an interrupted run",
                        self.path, torn[0], self.path.stat().st_size - good_end)
            fd = open_nofollow(self.path, os.O_WRONLY)
            try:
                os.ftruncate(fd, good_end)
            finally:
                os.close(fd)
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
        fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
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
