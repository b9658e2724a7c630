"""The progress bar every long loop shows (generation, judging, scoring), in one style."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def progress_bar(description: str) -> Progress:
    """A bar with a `rate` field for the loop's own speed figures (examples and tokens per second)."""
    return Progress(
        TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=False,
    )


def rate(done: int, start: float) -> str:
    """Examples per second since `start` (a `time.perf_counter()` reading)."""
    return f"{done / (time.perf_counter() - start):.2f} ex/s"
