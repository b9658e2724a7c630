"""What the console shows at the end of a run: one row per model, and a reading of each method comparison that
claims a difference only where the 95% interval of the difference excludes 0."""

from __future__ import annotations

from rich.console import Console

from ssrtune.report.formats import interval, kl_cell, num, points, share
from ssrtune.report.sections import GROUNDED_COLUMNS, drift_measured, grounded_cells, self_share
from ssrtune.report.tables import Table


def summary_table(analysis: dict) -> Table:
    """One row per model; the drift columns only for what the runs measured (`drift_measured`), the self-target
    share only where a model was trained."""
    models = analysis["models"]
    grounded = any(m["task"] and "grounded" in m["task"] for m in models)
    kl, gold = drift_measured(models)
    trained = any(self_share(m) is not None for m in models)
    header = ["model", "task accuracy [95% CI]", *(label for _, label in GROUNDED_COLUMNS if grounded),
              *(["self targets"] if trained else []), *(["KL from base [95% CI]"] if kl else []),
              *(["Δ gold log-lik [95% CI]"] if gold else [])]
    rows = [[m["label"], interval(m["task"]["accuracy"]) if m["task"] else "-", *grounded_cells(m["task"], grounded),
             *([share(self_share(m))] if trained else []), *([kl_cell(m["kl"])] if kl else []),
             *([interval(m["gold_ll_change"], "diff", signed=True)] if gold else [])]
            for m in models]
    # the benchmarks with gold answers (not IFEval), over which the change of their log-likelihood is averaged
    pooled = [name for name in analysis["benchmarks"] if any(m["retention"].get(name, {}).get("gold_ll_change")
                                                             for m in models)]
    note = f"Δ gold log-lik: paired against the base, mean over {', '.join(pooled)}." if gold else ""
    return Table(header, rows, "Summary", note)


def _difference(estimate: dict, digits: int) -> str:
    return interval(estimate, "diff", digits, signed=True)


def reading(comparison: dict) -> str:
    """One line on method a against method b; each clause names a direction only where it is resolved."""
    a, b = comparison["a"], comparison["b"]
    replicates = comparison["replicates"]
    clauses = []
    task = comparison["task"]
    if task:
        clauses.append(f"task accuracy {num(task['a'])} vs {num(task['b'])}, "
                       + (f"{a} {'higher' if task['diff'] > 0 else 'lower'} by {points(task)}" if task["resolved"]
                          else f"no resolved difference ({points(task)})"))
    kl = comparison["kl"]
    if kl:
        levels = (f"KL {interval({'mean': kl['a'], 'ci95': kl['a_ci95']}, digits=4)} vs "
                  f"{interval({'mean': kl['b'], 'ci95': kl['b_ci95']}, digits=4)}")
        clauses.append(f"{a} drifts {'less' if kl['diff'] < 0 else 'more'} than {b}: {levels} "
                       f"(difference {_difference(kl, 4)}, {kl['n']} prompts)" if kl["resolved"]
                       else f"drift: no resolved difference ({levels}, difference {_difference(kl, 4)})")
    gold = comparison["retention_pooled"]["gold_ll"]
    if gold:
        clauses.append(f"{a} keeps {'more' if gold['diff'] > 0 else 'less'} of the gold answers' log-likelihood "
                       f"(difference {_difference(gold, 3)} nats)" if gold["resolved"]
                       else f"gold answers' log-likelihood: no resolved difference ({_difference(gold, 3)} nats)")
    accuracy = comparison["retention_pooled"]["accuracy"]
    if accuracy:
        clauses.append(f"retention accuracy {'higher' if accuracy['diff'] > 0 else 'lower'} for {a} by "
                       f"{points(accuracy)}" if accuracy["resolved"]
                       else f"retention accuracy: unresolved at this size ({points(accuracy)})")
    kind = "seeds" if all(label.startswith("seed ") for label in replicates) else "replicates"
    what = f"{a} vs {b} ({comparison['setting']}" + (f", {len(replicates)} {kind} pooled)" if len(replicates) > 1
                                                    else ")")
    return f"{what}: " + "; ".join(clauses) + "." if clauses else f"{what}: nothing to compare."


def print_summary(analysis: dict, console: Console) -> None:
    table = summary_table(analysis)
    table.print(console)
    if table.note:
        console.print(table.note, markup=False)
    for line in analysis["reading"]:
        console.print(line, markup=False)
