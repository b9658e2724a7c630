"""The wall time of every stage of a run, in <run>/timings.json, so that docs quote stage times from a file.

Per stage key: `seconds` (all its sessions added up: a stage resumed after a kill counts the time before the kill
too), `started` (its first session's start), `ended` (its last session's end), `sessions` and `interrupted`.
A session is written as `running` when it starts; a session stopped by Ctrl-C counts as interrupted when it
closes; a process killed in it leaves that mark, and the next session
closes it at the last time the stage wrote to its artifact (the nearest thing to the moment of the kill on record).
A stage reused from a finished artifact is a short session of its own.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

from ssrtune.storage.artifacts import read_json, write_json

FILE = "timings.json"


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def last_write(path: Path) -> float | None:
    """The newest modification time of `path` or of anything below it."""
    if not path.exists():
        return None
    times = [path.stat().st_mtime]
    if path.is_dir():
        for folder, _, files in os.walk(path):
            times += [os.stat(os.path.join(folder, f)).st_mtime for f in files]
    return max(times)


class Timings:
    """The timings file of one run directory, written whenever a session starts or ends."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / FILE
        self.entries: dict[str, dict] = read_json(self.path) if self.path.exists() else {}

    def start(self, key: str, artifact: Path) -> float:
        """Open a session of `key` (closing one a killed process left open); its start time."""
        entry = self.entries.setdefault(key, {"seconds": 0.0, "sessions": 0, "interrupted": 0})
        running = entry.pop("running", None)
        if running is not None:
            ended = max(running, min(last_write(artifact) or running, time.time()))
            self._add(entry, running, ended)
            entry["interrupted"] += 1
        started = time.time()
        entry["running"] = started
        write_json(self.path, self.entries)
        return started

    def end(self, key: str, interrupted: bool = False) -> float:
        """Close the session of `key` (`interrupted`: stopped before it finished, by Ctrl-C); its seconds."""
        entry = self.entries[key]
        started = entry.pop("running")
        seconds = self._add(entry, started, time.time())
        entry["interrupted"] += interrupted
        write_json(self.path, self.entries)
        return seconds

    @staticmethod
    def _add(entry: dict, started: float, ended: float) -> float:
        seconds = ended - started
        entry["seconds"] = round(entry["seconds"] + seconds, 3)
        entry["sessions"] += 1
        entry.setdefault("started", _stamp(started))
        entry["ended"] = _stamp(ended)
        return seconds
