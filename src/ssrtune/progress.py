"""The progress bar every long loop shows (generation, judging, scoring), in one style."""

from __future__ import annotations

import time

from rich import get_console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ssrtune.console import quiet


def progress_bar(description: str) -> Progress:
    """A bar with a `rate` field for the loop's own speed figures (examples and tokens per second). On the quiet
    console it goes when done, and is not drawn where output is not a terminal (a log file): its stage's line
    (`console.stage_line`) tells the result."""
    return Progress(
        TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=quiet(),
        disable=quiet() and not get_console().is_terminal,
    )


def rate(done: int, start: float) -> str:
    """Examples per second since `start` (a `time.perf_counter()` reading)."""
    return f"{done / (time.perf_counter() - start):.2f} ex/s"
