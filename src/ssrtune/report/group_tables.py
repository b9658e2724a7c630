"""The tables of each method and setting pooled over its replicates (groups.py), shown where some method and
setting has more than one model: task in domain (and the hard set) and out of domain, drift, and retention per
benchmark."""

from __future__ import annotations

from ssrtune.report.analysis import RESOLUTION
from ssrtune.report.formats import change_cell, interval, kl_cell, share
from ssrtune.report.tables import Table
from ssrtune.storage.layout import BASE

POOLING = ("Pooled over the replicates of each method and setting (training seeds, runs; listed in `models`): each "
           "document's value averaged over them first, then the 95% interval over documents (prompts for KL); a "
           "method and setting with one model shows that model's numbers (Wilson intervals for accuracy).")


def summary_table(groups: list[dict]) -> Table:
    hard = any(g["hard"] for g in groups)  # the hard set's column where some run has one
    rows = [[g["label"], ", ".join(g["models"]), interval(g["task"]), *([interval(g["hard"])] if hard else []),
             interval(g["ood"]), kl_cell(g["kl"]), interval(g["gold_ll_change"], "diff", signed=True),
             share(g["relative_change"], signed=True) if g["relative_change"] is not None else "-"] for g in groups]
    header = ["method (setting)", "models", "task accuracy [95% CI]", *(["hard in domain [95% CI]"] if hard else []),
              "out of domain [95% CI]", "KL from base [95% CI]", "Δ gold log-lik [95% CI]",
              "retention: mean relative change"]
    note = (f"{POOLING} Δ gold log-lik: paired against each model's base on the retention documents, averaged over "
            "the benchmarks (each weighs the same); retention: the mean over benchmarks of the relative change of "
            "the primary metric against the base (the paper's drop when negative).")
    return Table(header, rows, "Per method and setting, pooled over seeds", note)


def retention_table(groups: list[dict], names: list[str]) -> Table | None:
    trained = [g for g in groups if g["retention"]]
    if not trained or not names:
        return None
    rows = []
    for name in names:
        first = next((g["retention"][name] for g in trained if name in g["retention"]), None)
        if first:
            rows.append([name, str(first["change"]["n"]),
                         *(change_cell(g["retention"].get(name, {})) for g in trained)])
    note = (f"{POOLING} Each cell: the change of the benchmark's primary metric against the base on the same "
            f"documents, in points with its 95% interval, and the relative change; unresolved where the interval "
            f"contains 0 or is wider than ±{100 * RESOLUTION:.0f} points.")
    return Table(["benchmark", "n", *(f"Δ {g['label']}" for g in trained)], rows,
                 "Retention per method and setting, pooled over seeds", note)


def group_tables(groups: list[dict], names: list[str]) -> list[Table]:
    if not any(len(g["models"]) > 1 for g in groups if g["method"] != BASE):
        return []  # every method and setting is one model: the model tables say it all
    return [t for t in (summary_table(groups), retention_table(groups, names)) if t is not None]
