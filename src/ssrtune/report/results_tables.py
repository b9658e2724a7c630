"""The tables docs/RESULTS.md adds to the report's (sections.py): the models the configuration names, done or
pending; the minimum detectable effects; the primary endpoints; task accuracy a − b on every judged suite; the judge's
acceptance rates."""

from __future__ import annotations

from ssrtune.report.analysis import RESOLUTION, proportion
from ssrtune.report.endpoints import IFEVAL
from ssrtune.report.formats import interval, num, points
from ssrtune.report.tables import Table

ENDPOINT_NAMES = {"kl": "KL from base (nats/token)", "ifeval": f"instruction following: Δ {IFEVAL}",
                  "retention": "retention: mean Δ accuracy over benchmarks", "task": "task accuracy (in domain)"}


def status_table(statuses: list[dict]) -> Table:
    keys = list(dict.fromkeys(k for s in statuses for k in s["provenance"]))
    rows = [[s["name"], s["method"], s["setting"], "-" if s["seed"] is None else str(s["seed"]), s["status"],
             *(str(s["provenance"].get(k, "-")) for k in keys)] for s in statuses]
    note = ("Every model the run's configuration names, and the base model. done: every suite evaluated; partial: "
            "some (the missing ones named); **pending**: none yet. "
            + (f"{', '.join(keys)}: as recorded in the run's provenance.json." if keys else
               "The run records no provenance (provenance.json) for its models."))
    return Table(["model", "method", "setting", "seed", "status", *keys], rows, "Models", note)


def mde_table(effects: dict) -> Table:
    rows = [[ENDPOINT_NAMES[name], str(e["n"]), num(e["mde"], 4) if name == "kl" else f"{100 * e['mde']:.1f} pts",
             e["basis"]] if e else
            [ENDPOINT_NAMES[name], "-", "pending",
             "the first seed pair's per-prompt KLs" if name == "kl" else "the base model's evaluation"]
            for name, e in effects.items()]
    note = ("The smallest paired difference a − b (accuracy in points) each endpoint detects with 80% power at two-sided α = 0.05: "
            "(1.96 + 0.84) · sd_diff / √n over n documents (prompts for KL; for the mean over benchmarks, the SE of "
            "that mean). sd_diff = √2 · sd_base: the two models' errors taken as independent, each with the base "
            "model's per-document spread (Bernoulli from its rate for task accuracy and IFEval); a positive "
            "correlation between the models makes the true MDE smaller. The base's KL to itself is 0, so the KL's "
            "comes from the first seed pair's own per-prompt differences, once they exist.")
    return Table(["endpoint", "n", "MDE", "estimated from"], rows, "Minimum detectable effects", note)


def _difference(name: str, estimate: dict) -> str:
    if name == "kl":
        return interval(estimate, "diff", 4, signed=True)
    return points(estimate)


def _signs(reading: dict) -> str:
    return " ".join({1: "+", -1: "−", 0: "0"}[s] for s in reading["seed_signs"]) or "-"


def _verdict(name: str, reading: dict, margin: float, seeds: int, designed: int) -> str:
    verdict = "resolved" if reading["resolved"] else "unresolved"
    if name == "task":
        verdict += f"; non-inferior at {margin:+.2f}: {'yes' if reading['non_inferior'] else 'no'}"
    return f"interim ({seeds} of {designed} seeds): {verdict}" if seeds < designed else verdict


def endpoints_table(primary: list[dict], margin: float) -> Table | None:
    rows = [[f"{c['a']} − {c['b']} ({c['setting']})", ENDPOINT_NAMES[name], str(r["n"]), _difference(name, r),
             _signs(r), _verdict(name, r, margin, len(c["replicates"]), c.get("designed", 0))]
            for c in primary for name, r in c["endpoints"].items()]
    note = ("Paired on the same documents (prompts for KL), each a model with the b model of the same setting and "
            "seed, pooled over the seeds (each document's difference averaged over them, then the 95% interval over "
            "documents). Accuracy differences in points. A difference is resolved only if its pooled interval "
            "excludes 0 and every seed's own difference (`seeds`, in the order of the seeds) has its sign. Task "
            f"accuracy is non-inferior when the pooled interval's lower end and every seed's difference are above "
            f"the margin {margin:+.2f}. The retention mean leaves out {IFEVAL}, an endpoint of its own. n: documents "
            "(prompts for KL, benchmarks for the retention mean). The report's tables below read differences by the "
            f"report's own rules (retention accuracy: an interval within ±{100 * RESOLUTION:.0f} points), not this one. "
            "A reading is **interim** while seeds the configuration names for the pair are pending: with fewer seeds "
            "the sign rule is weaker (one seed always agrees with itself), and the design reads it at the end.")
    return Table(["a − b (setting)", "endpoint", "n", "a − b [95% CI]", "seeds", "reading"], rows,
                 "Primary endpoints", note) if rows else None


def suites_table(suites: list[dict]) -> Table | None:
    rows = [[f"{s['a']} − {s['b']} ({s['setting']})", s["suite"], str(r["n"]), points(r), _signs(r),
             "resolved" if r["resolved"] else "unresolved"] for s in suites for r in [s["reading"]]]
    note = ("Task accuracy a − b on every judged suite (the held-out split, out of domain, the configuration's own "
            "eval sets such as a hard in-domain set), paired and pooled over seeds as the primary endpoints, read by "
            "the same rule.")
    return Table(["a − b (setting)", "suite", "n", "a − b [95% CI]", "seeds", "reading"], rows,
                 "Task accuracy on every judged suite", note) if rows else None


def acceptance_table(judge: list[dict]) -> Table | None:
    rows = [[r["judged"], str(r["n"]), interval(proportion(r["accept"], r["n"]))] for r in judge]
    return Table(["judged", "n", "accepted [95% CI]"], rows, "Judge acceptance rates",
                 "The share of answers the judge accepted, with its 95% Wilson interval (counts: Judge statistics).") \
        if rows else None
