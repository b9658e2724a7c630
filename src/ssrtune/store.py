"""Crash-safe artifacts: append-only JSONL record files with a fingerprint, and atomic whole-file writes.

Every stage writes its records through `RecordFile`. A record is one JSON line written with a single `write`
and flushed to disk; a crash can only leave a torn *last* line, which the next open detects and cuts off. The
fingerprint of the stage's inputs and settings sits in a sidecar file, so a resumed run never mixes records
made under different settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class StaleArtifactError(RuntimeError):
    pass


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (settings, file hashes, model ids)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary name in the same folder, then rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def iter_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


class RecordFile:
    """An append-only JSONL file of records keyed by `id`, resumable and guarded by a fingerprint.

    `fresh=True` discards existing records; otherwise a fingerprint mismatch raises `StaleArtifactError`.
    """

    def __init__(self, path: Path, fingerprint: str, fresh: bool = False):
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".meta.json")
        self.fingerprint = fingerprint
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.path.unlink(missing_ok=True)
            self.meta_path.unlink(missing_ok=True)
        if self.path.exists() and self.path.stat().st_size and not self.meta_path.exists():
            # The sidecar is written before the first record, so records without one were not made by this run.
            raise StaleArtifactError(f"{self.path} has records but no fingerprint ({self.meta_path.name}); "
                                     "rerun with --fresh to discard them")
        if self.path.exists() and self.meta_path.exists():
            old = read_json(self.meta_path).get("fingerprint")
            if old != fingerprint:
                raise StaleArtifactError(
                    f"{self.path} was made with other inputs or settings (fingerprint {old}, now {fingerprint}); "
                    "rerun with --fresh to discard it"
                )
        self.records: dict[str, dict] = self._load() if self.path.exists() else {}
        write_json(self.meta_path, {"fingerprint": fingerprint})

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
        lines = []
        for record in records:
            if record["id"] in self.records:
                raise ValueError(f"{self.path}: id {record['id']!r} is already written")
            self.records[record["id"]] = record
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
