"""Reading the results of one or more run directories: the report's only contact with the files of a run.

What the report reads, per run (`eval/<model>/` for `base` and each model of config.yaml's `models`, each with
its method, its setting and its seed):
- task.json, hard.json, ood.json: always `n` and `accuracy`; the grounded-QA keys (GROUNDED) only when the data has
  unanswerable examples; optionally `judge` (how it was scored) and `verdicts` (the judge's verdict counts,
  shown in the judge statistics). Per-example rows, where present, are
  scores.jsonl (task) and hard.json's and ood.json's `examples`, each with `id` and `correct`.
- <dataset>.json of user eval sets (judged): `n`, `accuracy`, `verdicts`.
- retention.json: `benchmarks` (per benchmark `primary`, the metric, and per-document `examples` with the
  metric and, where the benchmark has gold answers, `gold_ll`), and `kl` (`per_prompt`, `mean_kl`, `n_prompts`,
  `n_tokens`).
- train/<method>.stats.json: `shares` of target sources; judgments.jsonl: the judge's verdicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ssrtune.storage.layout import BASE, OWN_ANSWERS, RunLayout
from ssrtune.storage.artifacts import iter_jsonl, read_json
from ssrtune.config.train import setting_label
from ssrtune.errors import ReportError

SUITES = ("task", "hard", "ood", "retention")
GROUNDED = ("n_answerable", "n_unanswerable", "answerable_recall", "answerable_accuracy", "unanswerable_precision",
            "unanswerable_recall", "unanswerable_f1")


@dataclass
class Model:
    """One evaluated model of one run, with the results the report shows about it. The models of a method with the
    same `setting` (what the training learns beside its seed) are replicates of one another."""

    label: str
    name: str
    run: Path
    method: str = BASE
    setting: str = ""
    seed: int | None = None
    task: dict | None = None
    task_rows: list[dict] | None = None
    hard: dict | None = None
    hard_rows: list[dict] | None = None
    ood: dict | None = None
    ood_rows: list[dict] | None = None
    retention: dict | None = None
    datasets: dict[str, dict] = field(default_factory=dict)
    shares: dict[str, float] | None = None
    base: Model | None = None


def _json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return read_json(path)
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None


def _rows(path: Path, rows: list, field_name: str = "correct", where: str = "") -> list[dict]:
    """Per-example rows, each checked for an `id` and the score the report counts."""
    for number, row in enumerate(rows, start=1):
        for key in ("id", field_name):
            if not isinstance(row, dict) or key not in row:
                raise ReportError(f"{path}{where}, row {number}: no `{key}` field")
    return rows


def _jsonl(path: Path) -> list[dict]:
    try:
        return list(iter_jsonl(path))
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: a line is not valid JSON ({err.msg})") from None


def _task(layout: RunLayout, model: str, suite: str) -> tuple[dict | None, list[dict] | None]:
    path = layout.suite_scores(model, suite)
    result = _json(path)
    if result is None:
        return None, None
    for key in ("n", "accuracy"):
        if not isinstance(result.get(key), (int, float)):
            raise ReportError(f"{path}: field `{key}` is missing or not a number")
    if suite == "task":
        scores = layout.task_rows(model)
        rows = _rows(scores, _jsonl(scores)) if scores.exists() else None
        source = scores
    else:
        rows = _rows(path, result["examples"]) if result.get("examples") else None
        source = path
    if rows is not None and len(rows) != result["n"]:
        raise ReportError(f"{source}: {len(rows)} per-example rows, but {path.name} says n = {result['n']}")
    return result, rows


def _retention(path: Path) -> dict | None:
    result = _json(path)
    for name, benchmark in (result or {}).get("benchmarks", {}).items():
        if "primary" not in benchmark or benchmark["primary"] not in benchmark:
            raise ReportError(f"{path}: benchmark {name} has no `primary` metric")
        # a benchmark with no gold answer (IFEval) has no gold_ll, in its summary nor in its rows
        for key in (benchmark["primary"], *(["gold_ll"] if "gold_ll" in benchmark else [])):
            _rows(path, benchmark.get("examples", []), key, f" (benchmark {name})")
    return result


def models_of(run_dir: Path) -> list[Model]:
    """The trained models of config.yaml (its `models`, or one per entry of `methods`), unloaded."""
    path = RunLayout(run_dir).config
    if not path.exists():
        raise ReportError(f"{path}: no such file (is {run_dir} a run directory?)")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    train = config.get("train") or {}
    entries = config.get("models") or [{"name": m, "method": m} for m in config.get("methods") or []]
    return [Model(label=e["name"], name=e["name"], run=run_dir, method=e["method"],
                  setting=setting_label(train, e.get("train") or {}),
                  seed=(e.get("train") or {}).get("seed", train.get("seed", 0))) for e in entries]


def load_models(run_dirs: list[Path]) -> list[Model]:
    """Base first, then the models in each run's order; labels carry the run name when there are several runs."""
    models = []
    for run_dir in run_dirs:
        base = None
        layout = RunLayout(run_dir)
        for model in [Model(label=BASE, name=BASE, run=run_dir), *models_of(run_dir)]:
            folder = layout.evaluation(model.name)
            if not any(layout.suite_scores(model.name, suite).exists() for suite in SUITES):
                continue
            model.task, model.task_rows = _task(layout, model.name, "task")
            model.hard, model.hard_rows = _task(layout, model.name, "hard")
            model.ood, model.ood_rows = _task(layout, model.name, "ood")
            stats = _json(layout.target_stats(model.method))
            model.datasets = {p.stem: _json(p) for p in sorted(folder.glob("*.json")) if p.stem not in SUITES}
            model.retention = _retention(layout.retention(model.name))
            model.shares = stats["shares"] if stats and model.name != BASE else None
            model.label = model.name if len(run_dirs) == 1 else f"{run_dir.name}/{model.name}"
            model.base = base
            base = base or (model if model.name == BASE else None)
            models.append(model)
    return models


def judge_verdicts(run_dir: Path) -> list[str] | None:
    """The judge's verdicts on the base model's own answers to the training prompts, if the run has them."""
    path = RunLayout(run_dir).verdicts(OWN_ANSWERS)
    return [row["verdict"] for row in _rows(path, _jsonl(path), "verdict")] if path.exists() else None
