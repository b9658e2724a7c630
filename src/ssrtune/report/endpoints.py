"""The reproduction's primary endpoints (docs/RESULTS.md): method a against method b, paired on the same documents and
pooled over seeds by the report's comparisons (comparison.py), each read by the pre-registered rule; and the minimum
effect each endpoint can detect, from the base model's per-document variance.

Endpoints: KL from the base on general prompts, the change of IFEval's primary metric (a retention benchmark named
`ifeval`, where evaluated), the mean over the other retention benchmarks of the change of their primary metric, and
task accuracy (in domain) against a non-inferiority margin. A difference counts as resolved only if its pooled 95%
interval excludes 0 and every seed's own difference has the sign of the pooled one.

Minimum detectable effect (two-sided α = 0.05, power 0.8) of a paired difference over n documents:
(z_0.975 + z_0.8) · sd_diff / √n, with sd_diff = √2 · sd_base: the two models' errors taken as independent, each with
the base's spread; a positive correlation between them (the usual case: the same documents are hard for both) makes
the true sd_diff, and so the true MDE, smaller. The base's KL to itself is 0, so the KL's MDE comes from the data: the
first seed pair's own per-prompt differences (sd_diff measured, no √2).
"""

from __future__ import annotations

import math

from ssrtune.report.analysis import excludes_zero
from ssrtune.report.comparison import benchmark_values, pooled_benchmarks
from ssrtune.report.results import Model
from ssrtune.evaluation.stats import Z95, mean, stderr

Z_POWER80 = 0.8416212335729143  # the normal quantile of 0.8: power 80%
IFEVAL = "ifeval"
ENDPOINTS = ("kl", "ifeval", "retention", "task")


def detectable(se_diff: float) -> float:
    """The minimum detectable effect of a difference whose standard error is `se_diff`."""
    return (Z95 + Z_POWER80) * se_diff


def bernoulli_se(rate: float, n: int) -> float:
    """The standard error of a paired difference of two pass rates over n documents, each model's errors independent
    with the base's rate: √2 · √(p (1 - p)) / √n."""
    return math.sqrt(2 * rate * (1 - rate) / n)


def minimum_effects(base: Model | None, comparisons: list[dict]) -> dict:
    """Per endpoint: the minimum detectable effect with what it was computed from (`basis`), or None where the data
    for it is not there yet. The KL's comes from the first comparison with a seed pair's per-prompt KLs."""
    out: dict[str, dict | None] = dict.fromkeys(ENDPOINTS)
    if base is not None and base.task and base.task["n"]:
        rate, n = base.task["accuracy"], base.task["n"]
        out["task"] = {"mde": detectable(bernoulli_se(rate, n)), "n": n,
                       "basis": f"base accuracy {rate:.3f} over {n} documents (Bernoulli)"}
    benchmarks = (base.retention or {}).get("benchmarks", {}) if base is not None else {}
    passed = list(benchmark_values(base, IFEVAL, None).values()) if IFEVAL in benchmarks else []
    if passed:  # harness results without per-document rows have nothing to estimate from
        rate = mean(passed)
        out["ifeval"] = {"mde": detectable(bernoulli_se(rate, len(passed))), "n": len(passed),
                         "basis": f"base {benchmarks[IFEVAL]['primary']} {rate:.3f} over {len(passed)} prompts "
                                  "(Bernoulli)"}
    others = {name: list(benchmark_values(base, name, None).values()) for name in benchmarks if name != IFEVAL}
    others = {name: values for name, values in others.items() if len(values) > 1}
    if others:
        # mean over B benchmarks of paired differences: SE = √(Σ_b 2 · SE_b²) / B, SE_b the base's own per benchmark
        se = math.sqrt(sum(2 * stderr(values) ** 2 for values in others.values())) / len(others)
        out["retention"] = {"mde": detectable(se), "n": sum(len(v) for v in others.values()),
                            "basis": f"base per-document primary metric, sample SD per benchmark, "
                                     f"benchmarks {', '.join(others)}"}
    for comparison in comparisons:
        first = ((comparison.get("kl") or {}).get("per_replicate") or [None])[0]
        if first and first["n"] > 1:
            out["kl"] = {"mde": detectable(first["stderr"]), "n": first["n"],
                         "basis": f"{comparison['a']} − {comparison['b']} ({comparison['setting']}, "
                                  f"{first['replicate']}): the pair's per-prompt KL differences"}
            break
    return out


def seed_signs(estimate: dict) -> list[int]:
    return [(r["diff"] > 0) - (r["diff"] < 0) for r in estimate.get("per_replicate", [])]


def resolved(estimate: dict) -> bool:
    """The pooled interval excludes 0 and every seed's own difference has the pooled difference's sign."""
    sign = (estimate["diff"] > 0) - (estimate["diff"] < 0)
    signs = seed_signs(estimate)
    return excludes_zero(estimate) and bool(signs) and all(s == sign for s in signs)


def non_inferior(estimate: dict, margin: float) -> bool:
    """a is not worse than b by more than `margin` (< 0): the pooled interval's lower end and every seed's own
    difference above it."""
    return estimate["ci95"][0] > margin and all(r["diff"] > margin for r in estimate.get("per_replicate", []))


def endpoint_estimates(comparison: dict) -> dict[str, dict | None]:
    """Each endpoint's pooled paired difference (with per-seed rows) in one comparison; None where not measured."""
    retention = comparison["retention"]
    others = [r["accuracy"] for name, r in retention.items() if name != IFEVAL]
    return {"kl": comparison["kl"], "ifeval": (retention.get(IFEVAL) or {}).get("accuracy"),
            "retention": pooled_benchmarks(others) if others else None, "task": comparison["task"]}


def read(estimate: dict) -> dict:
    """A pooled paired difference as the endpoints table shows it: with each seed's difference and sign, resolved
    or not by the rule."""
    return {"diff": estimate["diff"], "ci95": estimate["ci95"], "n": estimate.get("n", estimate.get("benchmarks")),
            "seed_diffs": [r["diff"] for r in estimate.get("per_replicate", [])], "seed_signs": seed_signs(estimate),
            "resolved": resolved(estimate)}


def primary_endpoints(comparisons: list[dict], margin: float) -> list[dict]:
    """Per comparison (method pair and setting), each endpoint read by the rule; for task accuracy also whether a is
    non-inferior to b at `margin` (< 0)."""
    out = []
    for comparison in comparisons:
        rows = {name: read(e) for name, e in endpoint_estimates(comparison).items() if e}
        if "task" in rows:
            rows["task"]["non_inferior"] = non_inferior(comparison["task"], margin)
        out.append({"a": comparison["a"], "b": comparison["b"], "setting": comparison["setting"],
                    "replicates": comparison["replicates"], "margin": margin, "endpoints": rows})
    return out
