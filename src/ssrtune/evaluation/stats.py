"""The statistics of a comparison: confidence intervals, paired differences against the base, relative change."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def ratio(num: float, den: float, empty: float | None = None) -> float | None:
    """num / den, or `empty` when den is 0 (metrics over no examples: 0.0 in task metrics, None in an audit)."""
    return num / den if den else empty


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def stderr(values: Sequence[float]) -> float:
    """Standard error of the mean with the sample variance (n - 1), as lm-evaluation-harness reports it."""
    n = len(values)
    if n < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n)


def mean_interval(values: Sequence[float]) -> dict[str, float]:
    """The mean of independent units (documents, prompts) with its standard error and normal 95% interval."""
    m, se = mean(values), stderr(values)
    return {"mean": m, "stderr": se, "ci95": [m - Z95 * se, m + Z95 * se], "n": len(values)}


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: unlike p ± 1.96 SE it stays inside [0, 1] and is not empty at
    0 or n successes, which matters at the few hundred questions of a CPU run."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy(correct: Sequence[bool]) -> dict[str, float]:
    low, high = wilson_interval(sum(correct), len(correct))
    return {"value": mean([float(c) for c in correct]), "stderr": stderr([float(c) for c in correct]),
            "ci95": [low, high], "n": len(correct)}


def paired(base: Sequence[float], other: Sequence[float]) -> dict[str, float]:
    """Difference `other - base` over the same documents, its paired standard error and 95% interval, and for 0/1
    scores the documents that flipped each way."""
    if len(base) != len(other):
        raise ValueError(f"paired comparison needs the same documents ({len(base)} against {len(other)})")
    estimate = mean_interval([o - b for b, o in zip(base, other)])
    return {"diff": estimate["mean"], "stderr": estimate["stderr"], "ci95": estimate["ci95"], "n": estimate["n"],
            "gained": sum(1 for b, o in zip(base, other) if o > b),
            "lost": sum(1 for b, o in zip(base, other) if o < b)}


def relative_change(base: float, value: float) -> float | None:
    """(value - base) / base: the paper's performance drop when negative. None when the base scores 0."""
    return (value - base) / base if base else None
