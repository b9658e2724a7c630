"""How the report writes a number, an interval, a change in points and a share, and the cells made of them (a KL,
a change against the base): one spelling everywhere."""

from __future__ import annotations


def num(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def interval(estimate: dict | None, key: str = "mean", digits: int = 3, signed: bool = False) -> str:
    """`0.450 [0.342, 0.561]`: the estimate with its 95% interval (just the value where it has none)."""
    if not estimate:
        return "-"
    value = num(estimate[key], digits, signed)
    if not estimate.get("ci95"):
        return value
    low, high = estimate["ci95"]
    return f"{value} [{num(low, digits, signed)}, {num(high, digits, signed)}]"


def points(estimate: dict | None) -> str:
    """A difference of two proportions in percentage points with its interval: `-4.0 pts [-8.5, +0.5]`."""
    if not estimate:
        return "-"
    low, high = estimate["ci95"]
    return f"{100 * estimate['diff']:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}]"


def share(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def kl_cell(kl: dict | None) -> str:
    if not kl:
        return "-"
    return "0 (reference)" if kl.get("reference") else interval(kl, digits=4)


def change_cell(benchmark: dict) -> str:
    relative = benchmark.get("relative_change")
    cell = points(benchmark.get("change")) if "change" in benchmark else ""
    if relative is not None:
        cell += f" ({share(relative, signed=True)})" if cell else share(relative, signed=True)
    if "change" in benchmark and not benchmark["change"]["resolved"]:
        cell += " unresolved"
    return cell or "-"
