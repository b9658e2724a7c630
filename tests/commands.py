"""`ssrtune` on the command line, two ways: in this process (`cli`), as the console script runs it, for what a Python
call can check (exit status, messages, artifacts); and as a real process (`ssrtune`), where the process itself is
under test (the installed console script, its whole console, signals, two processes on one run)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

SSRTUNE = str(Path(sys.executable).parent / "ssrtune")  # the installed console script
SRC = str(Path(__file__).resolve().parents[1] / "src")
# A process that holds the run directory argv[1] until its stdin closes: another ssrtune on that run.
HOLDER = textwrap.dedent("""
    import sys
    from ssrtune.storage.rundir import run_dir_lock
    with run_dir_lock(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()
""")


def env(**variables: str) -> dict[str, str]:
    """This environment for a child process, this checkout's sources first on its path, and `variables`."""
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **variables}


def ssrtune(*args, cwd=None, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`ssrtune ARGS` as a process of its own, in this environment or `environment`."""
    return subprocess.run([SSRTUNE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=environment,
                          timeout=600)


class Outcome(NamedTuple):
    """A command's exit status and output, read as a `subprocess.CompletedProcess` is."""

    returncode: int
    stdout: str
    stderr: str


def cli(monkeypatch, capsys, *args) -> Outcome:
    """`ssrtune ARGS` in this process, as the console script runs it (`ssrtune.cli.entry`)."""
    from ssrtune.cli import entry

    capsys.readouterr()  # what was printed before is not this command's
    monkeypatch.setattr(sys, "argv", ["ssrtune", *map(str, args)])
    with pytest.raises(SystemExit) as done:
        entry()  # click's standalone mode ends with SystemExit, 0 on success
    out = capsys.readouterr()
    return Outcome(done.value.code or 0, out.out, out.err)
