"""The report's figures, drawn from the analysis: what resolves at small sizes, with its intervals.

1. task_vs_drift.png (the headline): task accuracy against the KL from the base model on general prompts (95%
   interval across prompts), one point per method and setting, pooled over its seeds (groups.py; a method and
   setting of one model is that model, with its Wilson interval).
2. gold_ll_change.png: the change of the gold answers' log-likelihood against the base model per retention
   benchmark (95% paired intervals), per method and setting, pooled over seeds. Retention accuracy is never
   plotted: at demo sizes it does not resolve.
docs/RESULTS.md (results_doc.py) draws one point per model, labelled, with intervals on both axes (`models_against`).
"""

from __future__ import annotations

import io

from ssrtune.storage.layout import BASE

MODEL_FIGURES = ("task_vs_kl.png", "task_vs_ifeval.png")  # docs/RESULTS.md's, by model_figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _error(estimate: dict, key: str) -> list[list[float]]:
    """Asymmetric error bars (Wilson intervals are not centred on the value)."""
    low, high = estimate["ci95"] or (estimate[key], estimate[key])
    return [[estimate[key] - low], [high - estimate[key]]]


def task_vs_drift(plt, groups: list[dict]) -> bytes | None:
    points = [g for g in groups if g["kl"] and g["task"]]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for g in points:
        kl, accuracy = g["kl"], g["task"]
        ax.errorbar(kl["mean"], accuracy["mean"], xerr=_error(kl, "mean"), yerr=_error(accuracy, "mean"), fmt="o",
                    ms=7, capsize=3, label=g["label"])
        if g["ood"]:
            ax.scatter(kl["mean"], g["ood"]["mean"], s=50, marker="^", facecolors="none", edgecolors="grey")
    ax.set_xlabel("drift: KL(base || model) on general prompts (nats/token, 95% CI)")
    ax.set_ylabel("task accuracy, 95% CI\n(triangles: out of domain)")
    ax.margins(x=0.15, y=0.15)
    ax.legend(fontsize="small")  # labels beside the points would overlap where methods drift alike
    pooled = any(len(g["models"]) > 1 for g in points)
    ax.set_title("Task score against drift from the base model" + ("\n(methods pooled over seeds)" if pooled else ""))
    fig.tight_layout()
    return _png(fig)


def gold_ll_change(plt, groups: list[dict], names: list[str]) -> bytes | None:
    changed = [g for g in groups if any(b.get("gold_ll_change") for b in g["retention"].values())]
    if not changed:
        return None
    names = [n for n in names if any(g["retention"].get(n, {}).get("gold_ll_change") for g in changed)]  # not IFEval
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.4))
    width = 0.8 / len(changed)
    for k, g in enumerate(changed):
        xs, ys, errors = [], [], [[], []]
        for i, name in enumerate(names):
            change = g["retention"].get(name, {}).get("gold_ll_change")
            if change:
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(change["diff"])
                low, high = _error(change, "diff")
                errors[0] += low
                errors[1] += high
        ax.bar(xs, ys, width, yerr=errors, capsize=3, label=g["label"])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("Δ log-likelihood of the gold answers\nvs base (nats, 95% paired CI)")
    ax.set_title("Change of the gold answers' log-likelihood")
    ax.legend()
    fig.tight_layout()
    return _png(fig)


def models_against(plt, points: list[tuple[str, dict, dict]], xlabel: str, title: str) -> bytes | None:
    """Task accuracy (y, `mean`) against another estimate (x, `mean` or `diff`) of each model: (label, x, y)."""
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for label, x, y in points:
        key = "diff" if "diff" in x else "mean"
        ax.errorbar(x[key], y["mean"], xerr=_error(x, key), yerr=_error(y, "mean"), fmt="o", ms=6, capsize=3)
        ax.annotate(label, (x[key], y["mean"]), textcoords="offset points", xytext=(5, 5), fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("task accuracy (in domain, 95% CI)")
    ax.margins(x=0.2, y=0.15)
    ax.set_title(title)
    fig.tight_layout()
    return _png(fig)


def figures(analysis: dict) -> dict[str, bytes]:
    """PNG figures by file name (only those the results can draw)."""
    plt = _pyplot()
    drawn = {"task_vs_drift.png": task_vs_drift(plt, analysis["groups"]),
             "gold_ll_change.png": gold_ll_change(plt, analysis["groups"], analysis["benchmarks"])}
    plt.close("all")
    return {name: png for name, png in drawn.items() if png}


def model_figures(analysis: dict, ifeval: str) -> dict[str, bytes]:
    """docs/RESULTS.md's figures, one point per model with task accuracy: against its KL from the base, and against
    its paired change of benchmark `ifeval`'s primary metric against the base (where that benchmark was evaluated)."""
    plt = _pyplot()
    scored = [m for m in analysis["models"] if m["task"]]
    drift = [(m["label"], m["kl"], m["task"]["accuracy"]) for m in scored if m["kl"]]
    reference = {"diff": 0.0, "ci95": [0.0, 0.0]}  # the base against itself, where it was evaluated on `ifeval`
    change = [(m["label"], m["retention"][ifeval].get("change", reference), m["task"]["accuracy"]) for m in scored
              if ifeval in m["retention"] and ("change" in m["retention"][ifeval] or m["method"] == BASE)]
    kl_png, ifeval_png = MODEL_FIGURES
    drawn = {kl_png: models_against(plt, drift, "KL(base || model) on general prompts (nats/token, 95% CI)",
                                    "Task score against drift, one point per model"),
             ifeval_png: models_against(plt, change, f"{ifeval}: change against the base (95% paired CI)",
                                        "Task score against the change of instruction following")}
    plt.close("all")
    return {name: png for name, png in drawn.items() if png}
