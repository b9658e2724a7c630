"""The comparison report of a run: base against each fine-tuning method."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ssrtune.store import read_json, write_text_atomic

COLUMNS = [
    ("answerable_recall", "ans. recall"),
    ("answerable_accuracy", "ans. acc"),
    ("unanswerable_precision", "unans. P"),
    ("unanswerable_recall", "unans. R"),
    ("unanswerable_f1", "unans. F1"),
    ("accuracy", "accuracy"),
]


def collect(run_dir: Path) -> list[dict]:
    """One row per evaluated model: base first, then the methods in the run's order."""
    order = ["base"] + [m for m in read_yaml_methods(run_dir) if m != "base"]
    rows = []
    for name in order:
        task = run_dir / "eval" / name / "task.json"
        if not task.exists():
            continue
        stats = run_dir / "train" / f"{name}.stats.json"
        self_share = read_json(stats)["shares"].get("self", 0.0) if stats.exists() else None
        rows.append({"model": name, **read_json(task), "self_share": self_share})
    return rows


def read_yaml_methods(run_dir: Path) -> list[str]:
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    return list(config.get("methods", []))


def _cells(row: dict) -> list[str]:
    share = "-" if row["self_share"] is None else f"{row['self_share']:.1%}"
    return [row["model"], *(f"{row[key]:.3f}" for key, _ in COLUMNS), share]


def markdown_table(rows: list[dict]) -> str:
    header = ["model", *(label for _, label in COLUMNS), "self targets"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def print_table(rows: list[dict], title: str, console: Console | None = None) -> None:
    table = Table(title=title)
    for label in ["model", *(label for _, label in COLUMNS), "self targets"]:
        table.add_column(label, justify="left" if label == "model" else "right")
    for row in rows:
        table.add_row(*_cells(row))
    console = console or Console()
    if not console.is_terminal:  # logs and pipes: don't wrap the columns to a default 80-character width
        console = Console(width=160)
    console.print(table)


def write_report(run_dir: Path) -> Path:
    rows = collect(run_dir)
    if not rows:
        raise FileNotFoundError(f"{run_dir}: no evaluation results yet (run `ssrtune evaluate` first)")
    n = rows[0]
    text = (
        f"# ssrtune report: {run_dir.name}\n\n"
        f"Held-out task: {n['n']} examples ({n['n_answerable']} answerable, {n['n_unanswerable']} unanswerable).\n"
        "`ans. recall` is the paper's token recall of the gold answer on answerable questions; `unans.` P/R/F1 "
        "score refusing on unanswerable ones; `self targets` is the share of training targets that are the "
        "model's own answers.\n\n" + markdown_table(rows) + "\n"
    )
    path = run_dir / "report.md"
    write_text_atomic(path, text)
    print_table(rows, f"ssrtune: {run_dir.name} (held-out task, n={n['n']})")
    return path
