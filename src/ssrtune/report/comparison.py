"""Method against method (default: ssr against sft), paired on the same documents, pooled over replicates.

Replicates: the models of a method that share a setting (what the training learns beside its seed: LoRA, full
fine-tuning with its learning rate, ...), one per training seed, in one run directory or several. Method a is
compared with method b setting by setting, each of a's replicates paired with b's of the same run and seed.

Within a pair both models answered the same documents (the test split, the out-of-domain set, the retention
sample) and the same general prompts, so each document gives one paired difference a - b. The difference of the
retention changes against the base, (a - base) - (b - base), is a - b on the same document: the base cancels.

Pooling over replicates (training seeds, runs): each document's difference is first averaged over the replicates
that hold it, and the interval is taken over documents. Not (seed, document) pairs as units: the replicates share
their documents, and a document hard for one seed is hard for the other, so its two differences are correlated;
counting them as independent units would understate the variance and give too narrow an interval. Averaging
first keeps one unit per document. The interval then covers the sampling of documents given the seeds that ran,
not the spread between seeds; each replicate's own difference and interval are reported beside it so that spread
can be seen.
"""

from __future__ import annotations

from ssrtune.report.analysis import benchmark_names, excludes_zero, pool_benchmarks, resolved_change
from ssrtune.report.results import Model
from ssrtune.evaluation.stats import mean, mean_interval

DEFAULT_PAIRS = (("ssr", "sft"),)

Values = dict[str, float]  # unit (document id, prompt index) -> value
ModelPair = tuple[Model, Model]


def unit_means(replicates: list[Values]) -> Values:
    """Each unit's value averaged over the replicates that hold it."""
    units: dict[str, list[float]] = {}
    for values in replicates:
        for unit, value in values.items():
            units.setdefault(unit, []).append(value)
    return {unit: mean(values) for unit, values in units.items()}


def pooled(pairs: list[tuple[Values, Values]], labels: list[str]) -> dict | None:
    """The mean difference a - b over the units each pair shares, averaged per unit over the pairs first; and
    each pair's own difference (`per_replicate`, labelled by `labels`)."""
    units: dict[str, list[tuple[float, float]]] = {}
    per_replicate = []
    for label, (a, b) in zip(labels, pairs):
        common = [unit for unit in a if unit in b]
        for unit in common:
            units.setdefault(unit, []).append((a[unit], b[unit]))
        if common:
            own = mean_interval([a[unit] - b[unit] for unit in common])
            per_replicate.append({"replicate": label, "a": mean([a[u] for u in common]),
                                  "b": mean([b[u] for u in common]), "diff": own["mean"], "stderr": own["stderr"],
                                  "ci95": own["ci95"], "n": own["n"]})
    if not units:
        return None
    a_means = [mean([x for x, _ in values]) for values in units.values()]
    b_means = [mean([y for _, y in values]) for values in units.values()]
    a_level, b_level = mean_interval(a_means), mean_interval(b_means)
    diff = mean_interval([x - y for x, y in zip(a_means, b_means)])
    return {"a": a_level["mean"], "a_ci95": a_level["ci95"], "b": b_level["mean"], "b_ci95": b_level["ci95"],
            "diff": diff["mean"], "stderr": diff["stderr"], "ci95": diff["ci95"], "n": diff["n"],
            "replicates": len(per_replicate), "per_replicate": per_replicate}


def scores(rows: list[dict] | None) -> Values:
    return {r["id"]: float(bool(r["correct"])) for r in rows or []}


def benchmark_values(model: Model, name: str, key: str | None) -> Values:
    """Per document of benchmark `name`: `key`, or the benchmark's primary metric; none for a `key` the benchmark
    does not record (gold_ll where there are no gold answers)."""
    result = (model.retention or {}).get("benchmarks", {}).get(name, {})
    key = key or result.get("primary")
    return {r["id"]: float(r[key]) for r in result.get("examples", []) if key in r}


def kl_values(model: Model) -> Values:
    # prompts are matched by position: the replicates of one experiment use the same general prompts
    return {str(i): v for i, v in enumerate((model.retention or {}).get("kl", {}).get("per_prompt", []))}


def mark(estimate: dict | None, rule=excludes_zero) -> dict | None:
    """The estimate and each replicate's, marked `resolved` by `rule`."""
    if not estimate:
        return None
    replicates = [{**r, "resolved": rule(r)} for r in estimate.get("per_replicate", [])]
    return {**estimate, "resolved": rule(estimate), "per_replicate": replicates}


def pooled_benchmarks(estimates: list[dict]) -> dict | None:
    """pool_benchmarks, with the two levels averaged over the benchmarks beside the difference, and per replicate
    where every benchmark has the same replicates."""
    out = pool_benchmarks(estimates)
    if out is None:
        return None
    labels = {tuple(r["replicate"] for r in e["per_replicate"]) for e in estimates}
    per_replicate = []
    if len(labels) == 1:
        for i, label in enumerate(labels.pop()):
            own = pool_benchmarks([e["per_replicate"][i] for e in estimates])
            per_replicate.append({"replicate": label, **own, "a": mean([e["per_replicate"][i]["a"] for e in estimates]),
                                  "b": mean([e["per_replicate"][i]["b"] for e in estimates])})
    return {**out, "a": mean([e["a"] for e in estimates]), "b": mean([e["b"] for e in estimates]),
            "per_replicate": per_replicate}


def replicate_label(model: Model, several_runs: bool) -> str:
    return f"{model.run.name} seed {model.seed}" if several_runs else f"seed {model.seed}"


def compare_pairs(pairs: list[ModelPair], labels: list[str]) -> dict:
    """Every paired difference of the first models of `pairs` against the second ones, pooled over the pairs."""
    def both(values) -> list[tuple[Values, Values]]:
        return [(values(x), values(y)) for x, y in pairs]

    retention = {}
    for name in benchmark_names([m for pair in pairs for m in pair]):
        accuracy = mark(pooled(both(lambda m: benchmark_values(m, name, None)), labels), resolved_change)
        if accuracy:
            gold_ll = mark(pooled(both(lambda m: benchmark_values(m, name, "gold_ll")), labels))
            metric = next(m.retention["benchmarks"][name]["primary"] for pair in pairs for m in pair
                          if name in (m.retention or {}).get("benchmarks", {}))
            retention[name] = {"metric": metric, "accuracy": accuracy, "gold_ll": gold_ll}
    return {
        "replicates": labels,
        "task": mark(pooled(both(lambda m: scores(m.task_rows)), labels)),
        "hard": mark(pooled(both(lambda m: scores(m.hard_rows)), labels)),
        "ood": mark(pooled(both(lambda m: scores(m.ood_rows)), labels)),
        "kl": mark(pooled(both(kl_values), labels)),
        "retention": retention,
        "retention_pooled": {
            "accuracy": mark(pooled_benchmarks([r["accuracy"] for r in retention.values()]), resolved_change),
            "gold_ll": mark(pooled_benchmarks([r["gold_ll"] for r in retention.values() if r["gold_ll"]])),
        },
    }


def replicate_pairs(models: list[Model], a: str, b: str) -> dict[str, list[ModelPair]]:
    """Per setting, the models of method `a` each with the model of method `b` of the same run, setting and seed."""
    partners = {(m.run, m.setting, m.seed): m for m in models if m.method == b}
    out: dict[str, list[ModelPair]] = {}
    for model in models:
        partner = partners.get((model.run, model.setting, model.seed)) if model.method == a else None
        if partner:
            out.setdefault(model.setting, []).append((model, partner))
    return out


def comparisons(models: list[Model], pairs=DEFAULT_PAIRS) -> list[dict]:
    """Method a against method b for each (a, b) of `pairs`, one comparison per setting both were trained with."""
    several_runs = len({m.run for m in models}) > 1
    out = []
    for a, b in pairs:
        for setting, matched in replicate_pairs(models, a, b).items():
            labels = [replicate_label(x, several_runs) for x, _ in matched]
            out.append({"a": a, "b": b, "setting": setting, **compare_pairs(matched, labels)})
    return out
