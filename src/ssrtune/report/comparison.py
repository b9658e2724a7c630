"""Method against method (default: ssr against sft), paired on the same documents, pooled over runs.

Within a run both models answered the same documents (the test split, the out-of-domain set, the retention
sample) and the same general prompts, so each document gives one paired difference a - b. The difference of the
retention changes against the base, (a - base) - (b - base), is a - b on the same document: the base cancels.

Pooling over runs (training seeds): each document's difference is first averaged over the runs that hold it, and
the interval is taken over documents. Not (seed, document) pairs as units: the runs of one experiment share their
documents, and a document hard for one seed is hard for the other, so its two differences are correlated;
counting them as independent units would understate the variance and give too narrow an interval. Averaging
first keeps one unit per document. The interval then covers the sampling of documents given the seeds that ran,
not the spread between seeds; the per-run differences are reported beside it so that spread can be seen.
"""

from __future__ import annotations

from pathlib import Path

from ssrtune.report.analysis import benchmark_names, excludes_zero, pool_benchmarks, resolved_change
from ssrtune.report.results import Model
from ssrtune.stats import mean, mean_interval

DEFAULT_PAIRS = (("ssr", "sft"),)

Values = dict[str, float]  # unit (document id, prompt index) -> value


def pooled(per_run: list[tuple[Values, Values]]) -> dict | None:
    """The mean difference a - b over units shared within each run, averaged per unit over runs first."""
    units: dict[str, list[tuple[float, float]]] = {}
    per_run_diff = []
    for a, b in per_run:
        common = [unit for unit in a if unit in b]
        for unit in common:
            units.setdefault(unit, []).append((a[unit], b[unit]))
        if common:
            per_run_diff.append(mean([a[unit] - b[unit] for unit in common]))
    if not units:
        return None
    a_means = [mean([x for x, _ in pairs]) for pairs in units.values()]
    b_means = [mean([y for _, y in pairs]) for pairs in units.values()]
    a_level, b_level = mean_interval(a_means), mean_interval(b_means)
    diff = mean_interval([x - y for x, y in zip(a_means, b_means)])
    return {"a": a_level["mean"], "a_ci95": a_level["ci95"], "b": b_level["mean"], "b_ci95": b_level["ci95"],
            "diff": diff["mean"], "stderr": diff["stderr"], "ci95": diff["ci95"], "n": diff["n"],
            "runs": len(per_run_diff), "per_run": per_run_diff}


def _scores(rows: list[dict] | None) -> Values:
    return {r["id"]: float(bool(r["correct"])) for r in rows or []}


def _benchmark(model: Model, name: str, key: str | None) -> Values:
    result = (model.retention or {}).get("benchmarks", {}).get(name, {})
    key = key or result.get("primary")
    return {r["id"]: float(r[key]) for r in result.get("examples", [])}


def _kl(model: Model) -> Values:
    # prompts are matched by position: the runs of one experiment use the same general prompts
    return {str(i): v for i, v in enumerate((model.retention or {}).get("kl", {}).get("per_prompt", []))}


def _mark(estimate: dict | None, rule=excludes_zero) -> dict | None:
    return estimate and {**estimate, "resolved": rule(estimate)}


def _pooled_benchmarks(estimates: list[dict]) -> dict | None:
    """pool_benchmarks, with the two methods' levels averaged over the benchmarks beside the difference, and per run
    where every benchmark has the same runs."""
    out = pool_benchmarks(estimates)
    if out is None:
        return None
    runs = {len(e["per_run"]) for e in estimates}
    per_run = [mean([e["per_run"][i] for e in estimates]) for i in range(runs.pop())] if len(runs) == 1 else []
    return {**out, "a": mean([e["a"] for e in estimates]), "b": mean([e["b"] for e in estimates]),
            "per_run": per_run}


def compare(models: list[Model], a: str, b: str) -> dict | None:
    """Every paired difference of method `a` against method `b` over the runs that hold both (None if none does)."""
    by_run: dict[Path, dict[str, Model]] = {}
    for model in models:
        by_run.setdefault(model.run, {})[model.name] = model
    pairs = [(named[a], named[b]) for named in by_run.values() if a in named and b in named]
    if not pairs:
        return None
    retention = {}
    for name in benchmark_names([m for pair in pairs for m in pair]):
        accuracy = _mark(pooled([(_benchmark(x, name, None), _benchmark(y, name, None)) for x, y in pairs]),
                         resolved_change)
        if accuracy:
            gold_ll = _mark(pooled([(_benchmark(x, name, "gold_ll"), _benchmark(y, name, "gold_ll"))
                                    for x, y in pairs]))
            metric = next(m.retention["benchmarks"][name]["primary"] for pair in pairs for m in pair
                          if name in (m.retention or {}).get("benchmarks", {}))
            retention[name] = {"metric": metric, "accuracy": accuracy, "gold_ll": gold_ll}
    return {
        "a": a, "b": b, "runs": [x.run.name for x, _ in pairs],
        "task": _mark(pooled([(_scores(x.task_rows), _scores(y.task_rows)) for x, y in pairs])),
        "ood": _mark(pooled([(_scores(x.ood_rows), _scores(y.ood_rows)) for x, y in pairs])),
        "kl": _mark(pooled([(_kl(x), _kl(y)) for x, y in pairs])),
        "retention": retention,
        "retention_pooled": {
            "accuracy": _mark(_pooled_benchmarks([r["accuracy"] for r in retention.values()]), resolved_change),
            "gold_ll": _mark(_pooled_benchmarks([r["gold_ll"] for r in retention.values() if r["gold_ll"]])),
        },
    }


def comparisons(models: list[Model], pairs=DEFAULT_PAIRS) -> list[dict]:
    return [c for a, b in pairs if (c := compare(models, a, b))]
