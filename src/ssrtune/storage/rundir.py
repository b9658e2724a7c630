"""One writer per run directory, and a full or read-only disk reported as one line.

Every stage command holds the run directory's lock (`run_guard`) while it works: a second process on the same run
stops at once, naming the holder. The lock is `fcntl.flock` on `<run>/.ssrtune.lock`, written by hand rather than
with `filelock` because the holder's process id, host and start time must be *in* the lock file for the contender
to name them, and filelock's flock lock writes nothing there. The kernel drops a flock when its process dies, however
it dies, so a lock left by a killed process is simply free; its record, still in the file, is reported as taken over.
The file is never deleted (a waiter and a newcomer could otherwise lock two different files of the same name); a
clean release empties it.

Evaluations of different models on one run are not let through in parallel: they all write the run's shared files
(config.yaml, truncation.json, report.md), so one writer per run is the rule for every stage.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from ssrtune.storage.nofollow import open_nofollow

log = logging.getLogger(__name__)

LOCK_NAME = ".ssrtune.lock"
# Below this much free space, a failure while the run was writing is taken for a full disk: libraries that write
# checkpoints (torch.save) report ENOSPC without its errno ("unexpected pos 576 vs 534").
NEARLY_FULL_BYTES = 1 << 20
ADVICE = {errno.ENOSPC: "free some space on the disk of {}", errno.EDQUOT: "free some space on the disk of {}",
          errno.EROFS: "make {} writable", errno.EACCES: "make {} writable", errno.EPERM: "make {} writable"}


class RunDirInUseError(RuntimeError):
    pass


class DiskFaultError(RuntimeError):
    pass


_held: dict[str, list] = {}  # real path of a run directory -> [lock file descriptor, depth]; reentrant per process
_held_guard = threading.Lock()


def _when(started: float) -> str:
    stamp = time.localtime(started)
    return time.strftime("%H:%M" if stamp[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M", stamp)


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # a holder still writing its record
        return {}


def _acquire(folder: Path) -> int:
    path = folder / LOCK_NAME
    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)  # a link planted there would have its target emptied
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        who = (f"process {holder.get('pid')} on {holder.get('host')} since {_when(holder.get('started', 0))} "
               f"({holder.get('command')})" if holder else "another process (starting)")
        raise RunDirInUseError(f"{folder} is in use by {who}; wait for it or pass run_dir=<another folder>") from None
    except BaseException:
        os.close(fd)
        raise
    previous = _read_holder(fd)
    if previous:
        log.warning("%s: taking over the lock of process %s on %s (since %s), which is no longer running", folder,
                    previous.get("pid"), previous.get("host"), _when(previous.get("started", 0)))
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    command = f"ssrtune {' '.join(sys.argv[1:2])}" if program == "ssrtune" else f"python {program}"
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": command}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    return fd


@contextlib.contextmanager
def run_dir_lock(folder: Path) -> Iterator[None]:
    """Hold `folder` for this process (reentrant: a stage inside a held command takes it again for free)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
        else:
            _held[key] = [_acquire(folder), 1]
    try:
        yield
    finally:
        with _held_guard:
            _held[key][1] -= 1
            if not _held[key][1]:
                fd = _held.pop(key)[0]
                with contextlib.suppress(OSError):  # an empty record means a clean release
                    os.ftruncate(fd, 0)
                os.close(fd)  # closing drops the flock


def disk_fault(folder: Path, err: BaseException) -> DiskFaultError | None:
    """`err` as one clear line if a full or read-only disk caused it, else None.

    Found by the errno of an `OSError` in the exception's chain; failing that, for an error that is not ssrtune's own
    (those already say what went wrong), by the state of the run directory's file system after the failure.
    """
    chain, cause = [], err
    while cause is not None and len(chain) < 20:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    found = next((e for e in chain if isinstance(e, OSError) and e.errno in ADVICE), None)
    folder = Path(folder)
    if found is not None:
        code, where, what = found.errno, found.filename or folder, found.strerror
        if code in (errno.EACCES, errno.EPERM) and folder.resolve() not in Path(where).resolve().parents:
            return None  # a file the run reads (the data, the model) is not the run directory's fault
    elif type(err).__module__.startswith("ssrtune"):
        return None
    else:
        code = _state(folder)
        if code is None:
            return None
        where, what = folder, f"{os.strerror(code)} ({type(err).__name__}: {(str(err) or '?').splitlines()[0][:200]})"
    return DiskFaultError(f"{where}: {what}; the files already written are whole: {ADVICE[code].format(folder)}, "
                          "then rerun the same command to resume")


def _state(folder: Path) -> int | None:
    """ENOSPC, EROFS or EACCES when the run directory cannot be written now, else None."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if stats.f_bavail * stats.f_frsize < NEARLY_FULL_BYTES:
        return errno.ENOSPC
    return None if os.access(folder, os.W_OK) else errno.EACCES


@contextlib.contextmanager
def run_guard(folder: Path) -> Iterator[None]:
    """The run directory's lock, held while the body runs; a disk fault in the body becomes a `DiskFaultError`."""
    try:
        with run_dir_lock(folder):
            yield
    except (RunDirInUseError, DiskFaultError):
        raise
    except Exception as err:
        fault = disk_fault(folder, err)
        if fault is None:
            raise
        raise fault from err


_command: ContextVar[contextlib.ExitStack | None] = ContextVar("ssrtune_command", default=None)


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    """The span of one CLI command: the run directory it `claim`s is guarded until the command ends."""
    with contextlib.ExitStack() as stack:
        token = _command.set(stack)
        try:
            yield
        finally:
            _command.reset(token)


def claim(folder: Path) -> None:
    """Guard `folder` (see `run_guard`) for the rest of the current command."""
    stack = _command.get()
    if stack is None:
        raise RuntimeError("claim() is for CLI commands, inside command_scope(); a library caller uses run_guard()")
    stack.enter_context(run_guard(folder))
