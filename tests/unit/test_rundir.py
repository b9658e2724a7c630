"""One writer per run directory: a second process stops at once naming the holder; a dead holder's lock is taken
over. (Real `ssrtune` processes on one run: test_chain_faults.py.)"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from ssrtune.storage.rundir import LOCK_NAME, DiskFaultError, RunDirInUseError, claim, disk_fault, run_dir_lock, run_guard
from ssrtune.storage.artifacts import StaleArtifactError
from tests.commands import HOLDER, cli, env
IN_USE = re.compile(r"^error: (?P<dir>\S+) is in use by process (?P<pid>\d+) on (?P<host>\S+) since \d\d:\d\d "
                    r"\((?P<command>[^)]*)\); wait for it or pass run_dir=<another folder>$")


@pytest.fixture()
def holder(tmp_path):
    """A lightweight process holding tmp_path/run until the test ends (or kills it)."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], env=env(), text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout.readline() == "held\n"
    yield process
    process.kill()
    process.wait()


def test_every_stage_command_stops_at_once_on_a_run_held_by_another_process(tiny_run, tmp_path, holder,
                                                                             monkeypatch, capsys):
    config = tiny_run.file(methods=["sft"])
    for command in ["run", "data", "generate", "judge", "select", "train", "evaluate", "judge-audit"]:
        result = cli(monkeypatch, capsys, command, config)
        line = result.stderr.strip()
        match = IN_USE.match(line)
        assert result.returncode == 2 and match and "\n" not in line, (command, result.stderr)
        assert match["dir"] == str(tmp_path / "run") and int(match["pid"]) == holder.pid
        assert match["host"] == socket.gethostname() and match["command"] == "python -c"
    result = cli(monkeypatch, capsys, "report", tmp_path / "run")
    assert result.returncode == 2 and IN_USE.match(result.stderr.strip())
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [LOCK_NAME]  # nothing was written


def test_the_lock_is_reentrant_in_a_process_and_released_at_its_end(tmp_path):
    folder = tmp_path / "run"
    with run_dir_lock(folder):
        with run_dir_lock(folder):  # a stage inside a command that holds the run
            record = json.loads((folder / LOCK_NAME).read_text())
            assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with open(folder / LOCK_NAME) as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # still held after the inner release
    assert (folder / LOCK_NAME).read_text() == ""  # a clean release leaves no holder behind
    with open(folder / LOCK_NAME) as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_claim_outside_a_command_is_a_programming_error(tmp_path):
    with pytest.raises(RuntimeError, match="run_guard"):
        claim(tmp_path)


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_warning(tmp_path, holder, caplog):
    with pytest.raises(RunDirInUseError, match=f"process {holder.pid} on"):
        with run_dir_lock(tmp_path / "run"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with caplog.at_level(logging.WARNING), run_dir_lock(tmp_path / "run"):
        assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of process {holder.pid} on {socket.gethostname()}" in caplog.text


def test_disk_faults_are_recognised_and_other_errors_are_left_alone(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "generations.jsonl"))
    fault = disk_fault(tmp_path, full)
    assert isinstance(fault, DiskFaultError) and str(fault).startswith(f"{tmp_path}/generations.jsonl: No space")
    assert "free some space" in str(fault)
    wrapped = RuntimeError("writing a checkpoint failed")
    wrapped.__cause__ = OSError(errno.EROFS, "Read-only file system")
    assert f"make {tmp_path} writable" in str(disk_fault(tmp_path, wrapped))
    # reading a file the run does not own without permission is not the run directory's fault
    assert disk_fault(tmp_path, PermissionError(errno.EACCES, "Permission denied", "/etc/shadow")) is None
    assert disk_fault(tmp_path, ValueError("a bug")) is None  # the run directory is writable and has room
    with pytest.raises(StaleArtifactError):  # ssrtune's own errors pass through the guard untouched
        with run_guard(tmp_path / "run"):
            raise StaleArtifactError("rerun with --fresh")


def test_a_symbolic_link_at_the_lock_is_refused_and_its_target_kept(tmp_path):
    from ssrtune.storage.nofollow import UnsafePathError

    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_NAME).symlink_to(target)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        with run_dir_lock(tmp_path / "run"):
            pass
    assert target.read_text() == "keep me\n"
