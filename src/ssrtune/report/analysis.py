"""Per-model statistics: task accuracy with its Wilson interval, retention against the base model of the same run
(paired on the same documents), and the drift from the base model (KL on general prompts, change of the gold
answers' log-likelihood). Every number here is a plain JSON value: report.json is this, unchanged.

Estimates are dicts: a level has `mean`, a difference `diff`; both carry `ci95` (and `stderr`, `n` where known).
"""

from __future__ import annotations

import math
from pathlib import Path

from ssrtune.report.results import GROUNDED, Model, ReportError, judge_verdicts
from ssrtune.evaluation.stats import Z95, mean, mean_interval, paired, relative_change, wilson_interval
from ssrtune.storage.layout import BASE
from ssrtune.judges.base import VERDICTS

# A retention accuracy change counts as resolved only when its 95% interval excludes 0 and is at most ±3 points
# wide: what a few hundred documents per benchmark can show, and the size issue 10 asks the demo to resolve.
RESOLUTION = 0.03


def proportion(successes: int, n: int) -> dict:
    """A share with its 95% Wilson interval."""
    return {"mean": successes / n if n else 0.0, "ci95": list(wilson_interval(successes, n)), "n": n}


def excludes_zero(estimate: dict) -> bool:
    low, high = estimate["ci95"]
    return low > 0 or high < 0


def resolved_change(estimate: dict) -> bool:
    low, high = estimate["ci95"]
    return excludes_zero(estimate) and (high - low) / 2 <= RESOLUTION


def pool_benchmarks(estimates: list[dict]) -> dict | None:
    """The mean over benchmarks of per-benchmark differences, each benchmark weighing the same; the benchmarks are
    independent samples, so the standard error is sqrt(sum of SE^2) / B."""
    if not estimates:
        return None
    diff = mean([e["diff"] for e in estimates])
    se = math.sqrt(sum(e["stderr"] ** 2 for e in estimates)) / len(estimates)
    return {"diff": diff, "stderr": se, "ci95": [diff - Z95 * se, diff + Z95 * se], "benchmarks": len(estimates)}


def task_summary(result: dict, rows: list[dict] | None, where: str) -> dict:
    """Accuracy with its Wilson interval (successes counted from the per-example rows where present, else from
    n and accuracy), the grounded-QA metrics where the data has unanswerable examples, and the judge's name."""
    n = result["n"]
    if rows is None:
        correct = round(result["accuracy"] * n)
    else:
        correct = sum(bool(r["correct"]) for r in rows)
        if abs(correct - result["accuracy"] * n) > 0.5:
            raise ReportError(f"{where}: accuracy {result['accuracy']} disagrees with its per-example rows "
                              f"({correct} of {n} correct)")
    out = {"n": n, "accuracy": proportion(correct, n)}
    if all(key in result for key in GROUNDED) and result["n_unanswerable"] > 0:
        out["grounded"] = {key: result[key] for key in GROUNDED}
    if result.get("judge"):
        out["judge"] = result["judge"]
    return out


def benchmark_names(models: list[Model]) -> list[str]:
    names: list[str] = []
    for m in models:
        names += [n for n in (m.retention or {}).get("benchmarks", {}) if n not in names]
    return names


def matched(mine: dict, theirs: dict, key: str) -> tuple[list[float], list[float]]:
    """The values of `key` on the documents both results hold, in the same order: (theirs, mine)."""
    other = {r["id"]: float(r[key]) for r in theirs.get("examples", [])}
    rows = [r for r in mine.get("examples", []) if r["id"] in other]
    return [other[r["id"]] for r in rows], [float(r[key]) for r in rows]


def benchmark_summary(model: Model, name: str) -> dict | None:
    """The primary metric with its interval and, against the base of the same run, its relative change, the paired
    change of the metric (marked resolved or not) and the paired change of the gold answers' log-likelihood."""
    mine = (model.retention or {}).get("benchmarks", {}).get(name)
    if not mine:
        return None
    metric = mine["primary"]
    out = {"metric": metric, "n": mine.get("n"), "mean": mine[metric]["value"], "ci95": mine[metric]["ci95"]}
    theirs = ((model.base.retention or {}) if model.base else {}).get("benchmarks", {}).get(name)
    if model.base is None or not theirs:
        return out
    out["relative_change"] = relative_change(theirs[metric]["value"], out["mean"])
    base_values, values = matched(mine, theirs, metric)
    if values:
        change = paired(base_values, values)
        out["change"] = {**change, "resolved": resolved_change(change)}
        if "gold_ll" in mine and "gold_ll" in theirs:  # not for a benchmark without gold answers (IFEval)
            out["gold_ll_change"] = paired(*matched(mine, theirs, "gold_ll"))
    return out


def kl_summary(model: Model) -> dict | None:
    """KL(base || model) per token of the base model's responses to general prompts: the mean over prompts with a
    95% interval across prompts, and the per-token mean over all prompts (`token_mean`). The base is the
    reference (0)."""
    kl = (model.retention or {}).get("kl")
    if not kl:
        return None
    if model.name == BASE:
        return {"mean": 0.0, "ci95": [0.0, 0.0], "n": kl.get("n_prompts"), "reference": True}
    if "per_prompt" not in kl:  # results written before per-prompt values were kept: no interval
        return {"mean": kl["mean_kl"], "ci95": None, "n": kl.get("n_prompts"), "token_mean": kl["mean_kl"]}
    return {**mean_interval(kl["per_prompt"]), "token_mean": kl.get("mean_kl"), "n_tokens": kl.get("n_tokens")}


def retention_average(retention: dict[str, dict]) -> dict | None:
    """The paper's headline number: the mean over benchmarks of the relative change against the base. It counts as
    resolved only when every benchmark's change is."""
    if not retention:
        return None
    relative = [b["relative_change"] for b in retention.values() if b.get("relative_change") is not None]
    return {"mean": mean([b["mean"] for b in retention.values()]),
            "relative_change": mean(relative) if relative else None,
            "resolved": bool(relative) and all(b.get("change", {}).get("resolved") for b in retention.values())}


def model_summary(model: Model, names: list[str]) -> dict:
    task = model.task and task_summary(model.task, model.task_rows, f"{model.run}/eval/{model.name}/task.json")
    hard, ood = (getattr(model, suite) and task_summary(getattr(model, suite), getattr(model, f"{suite}_rows"),
                                                        f"{model.run}/eval/{model.name}/{suite}.json")
                 for suite in ("hard", "ood"))
    retention = {name: b for name in names if (b := benchmark_summary(model, name))}
    datasets = {name: {"n": r["n"], "accuracy": proportion(r["verdicts"]["accept"], r["n"]), "verdicts": r["verdicts"]}
                for name, r in model.datasets.items() if "verdicts" in r}
    return {
        "label": model.label, "run": model.run.name, "name": model.name, "method": model.method,
        "setting": model.setting, "seed": model.seed,
        "task": task, "hard": hard, "ood": ood, "datasets": datasets, "targets": model.shares,
        "kl": kl_summary(model), "retention": retention, "retention_average": retention_average(retention),
        "gold_ll_change": pool_benchmarks([b["gold_ll_change"] for b in retention.values() if "gold_ll_change" in b]),
    }


def judge_summary(models: list[Model], run_dirs: list[Path]) -> list[dict]:
    """Verdict counts: on the base model's own answers to the training prompts, and on each model's answers to the
    task (held out, hard in domain, out of domain) and the user eval sets."""
    rows = []
    for run_dir in run_dirs:
        verdicts = judge_verdicts(run_dir)
        if verdicts is not None:
            label = "own answers (train)" if len(run_dirs) == 1 else f"{run_dir.name}: own answers (train)"
            rows.append({"judged": label, "n": len(verdicts), **{v: verdicts.count(v) for v in VERDICTS}})
    for m in models:
        judged = {"task": m.task, "hard": m.hard, "ood": m.ood, **m.datasets}
        rows += [{"judged": f"{m.label}: {name}", "n": r["n"], **{v: r["verdicts"].get(v, 0) for v in VERDICTS}}
                 for name, r in judged.items() if r and "verdicts" in r]
    return rows
