"""What the command line shows: one line per stage with its wall time, ssrtune's own warnings, and the libraries'
chatter (their warnings, "Loading weights" and dataset bars, the Trainer's progress bar and log dicts) only with
`--verbose`.

The libraries are quieted where they speak, through their own verbosity settings and warning filters bound to
their modules; Python warnings are never silenced as a whole, and ssrtune's own warnings (truncation, skipped rows,
judge failures) always show. The choice travels to the training processes `accelerate launch` starts through the
environment (`QUIET_ENV`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

from rich.console import Console

QUIET_ENV = "SSRTUNE_QUIET"
LIBRARIES = ("transformers", "trl", "peft", "accelerate", "datasets", "huggingface_hub", "torch")
# Warnings raised from inside these packages (by module name: a deprecation the library hits itself), not those
# they raise about a call of ours, which the warning attributes to our module.
LIBRARY_MODULES = rf"({'|'.join(LIBRARIES)})(\.|$)"

_stderr = Console(stderr=True, highlight=False)


def quiet() -> bool:
    """Whether the libraries are quieted: the CLI without --verbose, and the processes it starts."""
    return os.environ.get(QUIET_ENV) == "1"


def quiet_libraries() -> None:
    """Quiet the libraries in this process and in the processes it starts."""
    os.environ[QUIET_ENV] = "1"
    apply_quiet()


def apply_quiet() -> None:
    """The libraries' own switches: their loggers to errors only, their progress bars off, their warnings filtered."""
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARY_MODULES)


def duration(seconds: float) -> str:
    """`3 min 12 s`, `1 h 04 min`, `8.2 s`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def stage_line(key: str, summary: str, seconds: float) -> None:
    """`[generate] 200 own answers in 3 min 12 s`, on stderr (stdout holds a command's result)."""
    _stderr.print(f"[{key}] {summary + ' ' if summary else ''}in {duration(seconds)}", markup=False, soft_wrap=True)


def redone_line(key: str, part: str, reasons: list[str]) -> None:
    """`[judge] redone: judge.kind changed (token_f1 -> contains)`: a stage made again because its inputs changed
    (`part`: which of its files, where it has several)."""
    _stderr.print(f"[{key}] redone{' ' + part if part else ''}: {'; '.join(reasons)}", markup=False, soft_wrap=True)


@contextlib.contextmanager
def resume_notice() -> Iterator[None]:
    """Around a command: Ctrl-C ends it with one line saying how to go on (the exit status stays 130, typer's)."""
    try:
        yield
    except KeyboardInterrupt:
        _stderr.print("interrupted: run the same command again to resume where it stopped", markup=False)
        raise
