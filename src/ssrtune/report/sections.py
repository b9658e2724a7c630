"""The report's tables, each built from the analysis (report.json), so every number shown is in that file."""

from __future__ import annotations

from ssrtune.report.analysis import RESOLUTION
from ssrtune.report.formats import change_cell, interval, kl_cell, num, points, share
from ssrtune.report.group_tables import group_tables
from ssrtune.report.tables import Table
from ssrtune.storage.layout import BASE

GROUNDED_COLUMNS = [("answerable_recall", "ans. recall"), ("answerable_accuracy", "ans. acc"),
                    ("unanswerable_precision", "unans. P"), ("unanswerable_recall", "unans. R"),
                    ("unanswerable_f1", "unans. F1")]


def self_share(model: dict) -> float | None:
    return None if model["targets"] is None else model["targets"].get("self", 0.0)


def grounded_cells(result: dict | None, shown: bool) -> list[str]:
    """The grounded-QA columns of a task result: its values, `-` where this model's data has none."""
    if not shown:
        return []
    grounded = (result or {}).get("grounded")
    return [num(grounded[key]) if grounded else "-" for key, _ in GROUNDED_COLUMNS]


def identity_cells(model: dict, shown: bool) -> list[str]:
    """Method, setting and seed of a model, where some model of the report is not named after its method."""
    if not shown:
        return []
    return ["-", "-", "-"] if model["method"] == BASE else [model["method"], model["setting"], str(model["seed"])]


def named_models(models: list[dict]) -> bool:
    return any(m["name"] != m["method"] for m in models if m["method"] != BASE)


def task_table(models: list[dict], suite: str, title: str, about: str) -> Table | None:
    """Accuracy with its Wilson interval for every model; the grounded-QA columns only where results carry them."""
    rows = [m for m in models if m[suite]]
    if not rows:
        return None
    grounded, named = any("grounded" in m[suite] for m in rows), named_models(models)
    header = ["model", *(["method", "setting", "seed"] if named else []), "n", "accuracy [95% CI]",
              *(label for _, label in GROUNDED_COLUMNS if grounded)]
    header += ["self targets"] if suite == "task" else []
    cells = [[m["label"], *identity_cells(m, named), str(m[suite]["n"]), interval(m[suite]["accuracy"]),
              *grounded_cells(m[suite], grounded)] + ([share(self_share(m))] if suite == "task" else []) for m in rows]
    first = rows[0][suite]
    note = f"{first['n']} examples"
    if "grounded" in first:
        note += f" ({first['grounded']['n_answerable']} answerable, {first['grounded']['n_unanswerable']} unanswerable)"
    note += f". {about} Accuracy with its 95% Wilson interval."
    if grounded:
        note += (" `ans. recall` is the paper's token recall of the gold answer on answerable questions; `unans.` "
                 "P/R/F1 score refusing on unanswerable ones.")
    if suite == "task":
        note += " `self targets`: the share of training targets that are the model's own answers."
    judges = sorted({m[suite]["judge"] for m in rows if m[suite].get("judge")})
    if judges:
        note += f" Scored by: {', '.join(judges)}."
    return Table(header, cells, title, note)


def datasets_table(models: list[dict]) -> Table | None:
    rows = [[m["label"], name, str(r["n"]), interval(r["accuracy"])] for m in models for name, r in m["datasets"].items()]
    return Table(["model", "dataset", "n", "accepted [95% CI]"], rows, "User eval sets (judged)",
                 "Share of answers the dataset's judge accepts, with its 95% Wilson interval.") if rows else None


def drift_measured(models: list[dict]) -> tuple[bool, bool]:
    """Whether the runs measured the KL from the base, and the change of the gold answers' log-likelihood: the
    tables show the columns of what was measured only."""
    return any(m["kl"] for m in models), any(m["gold_ll_change"] for m in models)


def drift_table(models: list[dict]) -> Table | None:
    """The headline: how far each model moved from the base model, measured where it resolves at small sizes. The
    columns and the note hold the measures the runs took (`drift_measured`), not the others."""
    kl, gold = drift_measured(models)
    header = ["model", *(["KL from base [95% CI]", "prompts", "KL per token"] if kl else []),
              *(["Δ gold log-lik [95% CI]", "benchmarks"] if gold else [])]
    rows = [[m["label"],
             *([kl_cell(m["kl"]), str(m["kl"]["n"]) if m["kl"] else "-", num((m["kl"] or {}).get("token_mean"), 4)]
               if kl else []),
             *([interval(m["gold_ll_change"], "diff", signed=True),
                str(m["gold_ll_change"]["benchmarks"]) if m["gold_ll_change"] else "-"] if gold else [])]
            for m in models if m["kl"] or m["gold_ll_change"]]
    notes = []
    if kl:
        notes.append("KL: KL(base || model) per token of the base model's own responses to general prompts (base "
                     "top-k tokens plus one bucket for the rest: a lower bound on the full KL), averaged per prompt "
                     "and then over prompts, with a 95% interval across prompts; `per token` weighs every token of "
                     "every prompt the same.")
    if gold:
        notes.append("Δ gold log-lik: the change against the base model of the log-likelihood of the gold answers on "
                     "the retention benchmarks, paired on the same documents, averaged over benchmarks (each weighs "
                     "the same); negative means the model finds the right answers less likely than the base did.")
    return Table(header, rows, "Drift from the base model", " ".join(notes)) if rows else None


def retention_table(models: list[dict], names: list[str]) -> Table | None:
    if not names:
        return None
    with_base = [m["name"] != BASE and any("relative_change" in b for b in m["retention"].values()) for m in models]
    header = ["benchmark", "metric", "n"]
    for m, delta in zip(models, with_base):
        header += [m["label"]] + ([f"Δ {m['label']}"] if delta else [])
    rows = []
    for name in names:
        first = next(m["retention"][name] for m in models if name in m["retention"])
        row = [name, first["metric"], str(first["n"] or "-")]
        for m, delta in zip(models, with_base):
            benchmark = m["retention"].get(name)
            row += [interval(benchmark) if benchmark else "-"] + ([change_cell(benchmark or {})] if delta else [])
        rows.append(row)
    average = ["average", "", ""]
    for m, delta in zip(models, with_base):
        summary = m["retention_average"]
        average.append(num(summary and summary["mean"]))
        if delta:
            cell = share(summary["relative_change"], signed=True)
            average.append(cell + ("" if summary["resolved"] else " unresolved"))
    rows.append(average)
    note = (f"Primary metric per benchmark with its 95% interval. Δ: the change against the base model of the same "
            f"run on the same documents, in points with its 95% paired interval, and the relative change (the "
            f"paper's drop when negative). A change is marked unresolved where its interval contains 0 or is wider "
            f"than ±{100 * RESOLUTION:.0f} points: too few documents to tell. The average relative change (the "
            "paper's headline) counts as resolved only when every benchmark's change is.")
    return Table(header, rows, "Retention of general ability", note)


def paired_table(models: list[dict], names: list[str]) -> Table | None:
    rows = [[m["label"], name, points(b["change"]), "unresolved" if not b["change"]["resolved"] else "resolved",
             str(b["change"]["gained"]), str(b["change"]["lost"]),
             interval(b.get("gold_ll_change"), "diff", signed=True)]  # none for IFEval: no gold answers
            for m in models for name in names if "change" in (b := m["retention"].get(name, {}))]
    note = ("Same documents as the base model of the run: the change of the primary metric with its 95% paired "
            "interval, how many documents flipped to correct (gained) or to wrong (lost), and the mean change of "
            "the gold answer's log-likelihood (nats) with its 95% paired interval.")
    header = ["model", "benchmark", "Δ metric [95% CI]", "reading", "gained", "lost", "Δ gold log-lik [95% CI]"]
    return Table(header, rows, "Paired comparison against the base model", note) if rows else None


def _verdict(estimate: dict, accuracy: bool) -> str:
    if estimate["resolved"]:
        return "resolved"
    return "unresolved" if accuracy else "no resolved difference"


def _comparison_rows(quantity: str, estimate: dict | None, digits: int, accuracy: bool) -> list[list[str]]:
    """The pooled row, and below it one row per replicate where there are several."""
    if not estimate:
        return []

    def row(label: str, e: dict) -> list[str]:
        diff = points(e) if accuracy else interval(e, "diff", digits, signed=True)
        return [label, str(e.get("n", e.get("benchmarks", "-"))), num(e["a"], digits), num(e["b"], digits), diff,
                _verdict(e, accuracy)]

    replicates = estimate["per_replicate"] if len(estimate["per_replicate"]) > 1 else []
    return [row(quantity, estimate), *(row(f"· {r['replicate']}", r) for r in replicates)]


def comparison_table(comparison: dict) -> Table:
    a, b, replicates = comparison["a"], comparison["b"], comparison["replicates"]
    specs = [("task accuracy (in domain)", comparison["task"], 3, True),
             ("task accuracy (hard in domain)", comparison["hard"], 3, True),
             ("task accuracy (out of domain)", comparison["ood"], 3, True),
             ("KL from base (nats/token)", comparison["kl"], 4, False)]
    for name, r in comparison["retention"].items():
        specs += [(f"{name}: {r['metric']}", r["accuracy"], 3, True), (f"{name}: gold log-lik", r["gold_ll"], 3, False)]
    pooled = comparison["retention_pooled"]
    specs += [("retention accuracy (mean over benchmarks)", pooled["accuracy"], 3, True),
              ("gold log-lik (mean over benchmarks)", pooled["gold_ll"], 3, False)]
    rows = [row for spec in specs for row in _comparison_rows(*spec)]
    header = ["quantity", "n", a, b, f"{a} − {b} [95% CI]", "reading"]
    note = (f"{a} against {b} directly ({comparison['setting']}), paired on the same documents (prompts for KL): "
            f"each {a} model with the {b} model of the same run, setting and seed ({', '.join(replicates)})"
            + (f"; pooled over the {len(replicates)} replicates: each document's difference is averaged over them "
               "first and the interval is taken over documents (a document they share is one unit, not one per "
               "replicate), so the interval covers the choice of documents; the rows marked · below each quantity "
               "are the replicates on their own, with their own intervals, and show the spread between seeds"
               if len(replicates) > 1 else "")
            + f". n: documents (prompts; benchmarks for the means over benchmarks). The difference of the retention "
              f"changes against the base equals the difference on the same documents (the base cancels). Accuracy "
              f"differences are in points and resolved only where the interval excludes 0 and is within "
              f"±{100 * RESOLUTION:.0f} points; the others where it excludes 0.")
    return Table(header, rows, f"Method against method: {a} − {b} ({comparison['setting']})", note)


def targets_table(models: list[dict]) -> Table | None:
    """One row per method and run: the models of a method train on the same targets."""
    with_targets = list({(m["run"], m["method"]): m for m in models if m["targets"]}.values())
    sources = sorted({s for m in with_targets for s in m["targets"]})
    runs = len({m["run"] for m in models}) > 1
    rows = [[f"{m['run']}/{m['method']}" if runs else m["method"], *(share(m["targets"].get(s, 0.0)) for s in sources)]
            for m in with_targets]
    return Table(["method", *sources], rows, "Training targets per method",
                 "Share of training targets by source: the model's own answers (self), the gold answers, or a "
                 "restatement of the gold answer.") if rows else None


def judge_table(judge: list[dict]) -> Table | None:
    rows = [[r["judged"], str(r["n"]), *(str(r[v]) for v in ("accept", "reject", "failed"))] for r in judge]
    if not rows:
        return None
    return Table(["judged", "n", "accept", "reject", "failed"], rows, "Judge statistics",
                 "Verdicts on the base model's own answers to the training prompts (judgments.jsonl), and on each "
                 "model's answers to the task and the user eval sets (a failed verdict counts as not accepted).")


def build_tables(analysis: dict) -> list[Table]:
    models, names = analysis["models"], analysis["benchmarks"]
    tables = [
        task_table(models, "task", "Task: held-out split (in domain)", "The task's own test split."),
        task_table(models, "hard", "Task: hard in domain (same-article unanswerables)",
                   "More held-out questions of the task's recipe, the unanswerable ones paired with another paragraph "
                   "of their own article: the topic does not give the refusal away."),
        task_table(models, "ood", "Task: out of domain (conversational QA from CoQA)",
                   "A grounded-QA set the models were not trained on."),
        datasets_table(models), drift_table(models),
        *group_tables(analysis["groups"], names),
        *(comparison_table(c) for c in analysis["comparisons"]),
        retention_table(models, names), paired_table(models, names), targets_table(models),
        judge_table(analysis["judge"]),
    ]
    return [t for t in tables if t is not None]
