"""Each method and setting pooled over its replicates (training seeds, runs): the levels of task accuracy and KL,
and the changes against the base model, the way comparisons pool (comparison.py): each document's value averaged
over the replicates that hold it, then the interval over documents (prompts for KL).

A group of one model is that model's own numbers (Wilson intervals for accuracy, as in its row of the model tables).
"""

from __future__ import annotations

from ssrtune.report.analysis import kl_summary, pool_benchmarks, resolved_change, task_summary
from ssrtune.report.comparison import (benchmark_values, kl_values, mark, pooled, replicate_label, scores,
                                       unit_means)
from ssrtune.report.results import Model
from ssrtune.evaluation.stats import mean_interval


def group_models(models: list[Model]) -> list[list[Model]]:
    """The models by (method, setting), in order of first appearance; the base models are one group."""
    groups: dict[tuple[str, str], list[Model]] = {}
    for model in models:
        groups.setdefault((model.method, model.setting), []).append(model)
    return list(groups.values())


def _level(models: list[Model], values, bounds: tuple[float, float] | None = None) -> dict | None:
    """The mean over units of each unit's value averaged over the models; the interval kept within `bounds`."""
    means = unit_means([values(m) for m in models])
    if not means:
        return None
    level = mean_interval(list(means.values()))
    if bounds:
        level["ci95"] = [max(bounds[0], level["ci95"][0]), min(bounds[1], level["ci95"][1])]
    return {**level, "models": len(models)}


def _task(models: list[Model], suite: str) -> dict | None:
    rows = [m for m in models if getattr(m, suite)]
    if len(rows) == 1:
        m = rows[0]
        return task_summary(getattr(m, suite), getattr(m, f"{suite}_rows"), f"{m.run}/eval/{m.name}/{suite}.json")[
            "accuracy"]
    return _level(rows, lambda m: scores(getattr(m, f"{suite}_rows")), bounds=(0.0, 1.0)) if rows else None


def _kl(models: list[Model]) -> dict | None:
    if len(models) == 1 or models[0].base is None:  # one model, or the base models (the reference)
        return kl_summary(models[0])
    return _level([m for m in models if (m.retention or {}).get("kl")], kl_values)


def _against_base(models: list[Model], labels: list[str], names: list[str]) -> dict:
    """Per benchmark, the change of the primary metric and of the gold answers' log-likelihood against each model's
    own base, pooled over the models; and the changes averaged over the benchmarks."""
    with_base = [(m, label) for m, label in zip(models, labels) if m.base is not None]
    retention = {}
    for name in names:
        def against(key):
            return pooled([(benchmark_values(m, name, key), benchmark_values(m.base, name, key))
                           for m, _ in with_base], [label for _, label in with_base])

        change = mark(against(None), resolved_change)
        if change:
            relative = change["diff"] / change["b"] if change["b"] else None
            retention[name] = {"change": change, "relative_change": relative, "gold_ll_change": mark(against("gold_ll"))}
    relatives = [r["relative_change"] for r in retention.values() if r["relative_change"] is not None]
    return {"retention": retention,
            "relative_change": sum(relatives) / len(relatives) if relatives else None,
            "gold_ll_change": pool_benchmarks([r["gold_ll_change"] for r in retention.values() if r["gold_ll_change"]])}


def group_summary(models: list[Model], names: list[str], label_by_setting: bool) -> dict:
    first = models[0]
    several_runs = len({m.run for m in models}) > 1
    labels = [replicate_label(m, several_runs) for m in models]
    label = first.method + (f" ({first.setting})" if label_by_setting and first.setting else "")
    return {"label": label, "method": first.method, "setting": first.setting,
            "models": [m.label for m in models], "replicates": labels,
            "task": _task(models, "task"), "hard": _task(models, "hard"), "ood": _task(models, "ood"),
            "kl": _kl(models),
            **_against_base(models, labels, names)}


def groups(models: list[Model], names: list[str]) -> list[dict]:
    """Every (method, setting) pooled over its replicates; labelled by the method, and by the setting too where a
    method was trained in more than one."""
    grouped = group_models(models)
    methods = [g[0].method for g in grouped]
    by_setting = len(methods) != len(set(methods))
    return [group_summary(g, names, by_setting) for g in grouped]
