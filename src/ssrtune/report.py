"""The comparison report of one or more runs: base against each fine-tuning method.

`write_report` writes report.md (figures beside it in figures/) and a self-contained report.html (figures
embedded as base64 PNG): the task tables (in domain and out of domain), the retention table with relative
changes and 95% intervals, the paired comparison against the base, the share of self targets per method, the
judge's statistics, and two figures.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from ssrtune.stats import mean, paired, relative_change
from ssrtune.store import iter_jsonl, read_json, write_text_atomic

COLUMNS = [
    ("answerable_recall", "ans. recall"),
    ("answerable_accuracy", "ans. acc"),
    ("unanswerable_precision", "unans. P"),
    ("unanswerable_recall", "unans. R"),
    ("unanswerable_f1", "unans. F1"),
    ("accuracy", "accuracy"),
]


class ReportError(ValueError):
    pass


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""] + ([self.note, ""] if self.note else [])
        lines += ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        note = f"<p class='note'>{html.escape(self.note)}</p>" if self.note else ""
        return f"<h2>{html.escape(self.title)}</h2>{note}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def print(self, console: Console) -> None:
        table = RichTable(title=self.title)
        for i, label in enumerate(self.header):
            table.add_column(label, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        console.print(table)


@dataclass
class Model:
    """One evaluated model of one run, with everything the report shows about it."""

    label: str
    name: str
    run: Path
    task: dict | None = None
    ood: dict | None = None
    retention: dict | None = None
    datasets: dict[str, dict] = field(default_factory=dict)
    self_share: float | None = None
    shares: dict[str, float] | None = None
    base: Model | None = None


def read_yaml_methods(run_dir: Path) -> list[str]:
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    return list(config.get("methods", []))


def _read(path: Path) -> dict | None:
    return read_json(path) if path.exists() else None


def load_models(run_dirs: list[Path]) -> list[Model]:
    """Base first, then the methods in each run's order; labels carry the run name when there are several runs."""
    models = []
    for run_dir in run_dirs:
        base = None
        for name in ["base"] + [m for m in read_yaml_methods(run_dir) if m != "base"]:
            folder = run_dir / "eval" / name
            if not any((folder / f"{suite}.json").exists() for suite in ("task", "ood", "retention")):
                continue
            stats = _read(run_dir / "train" / f"{name}.stats.json")
            datasets = {p.stem: read_json(p) for p in sorted(folder.glob("*.json"))
                        if p.stem not in ("task", "ood", "retention")}
            model = Model(label=name if len(run_dirs) == 1 else f"{run_dir.name}/{name}", name=name, run=run_dir,
                          task=_read(folder / "task.json"), ood=_read(folder / "ood.json"),
                          retention=_read(folder / "retention.json"), datasets=datasets,
                          self_share=stats["shares"].get("self", 0.0) if stats else None,
                          shares=stats["shares"] if stats else None, base=base)
            base = base or (model if name == "base" else None)
            models.append(model)
    return models


def collect(run_dir: Path) -> list[dict]:
    """One row of task metrics per evaluated model: base first, then the methods in the run's order."""
    return [{"model": m.name, **m.task, "self_share": m.self_share} for m in load_models([run_dir]) if m.task]


def _cells(row: dict) -> list[str]:
    share = "-" if row["self_share"] is None else f"{row['self_share']:.1%}"
    return [row["model"], *(f"{row[key]:.3f}" for key, _ in COLUMNS), share]


def markdown_table(rows: list[dict]) -> str:
    header = ["model", *(label for _, label in COLUMNS), "self targets"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def print_table(rows: list[dict], title: str, console: Console | None = None) -> None:
    task_table(title, [{**r, "label": r["model"]} for r in rows]).print(_console(console))


def _console(console: Console | None = None) -> Console:
    console = console or Console()
    # logs and pipes: don't wrap the columns to a default 80-character width
    return console if console.is_terminal else Console(width=160)


def task_table(title: str, rows: list[dict], note: str = "") -> Table:
    header = ["model", *(label for _, label in COLUMNS), "self targets"]
    return Table(title, header, [_cells({**r, "model": r["label"]}) for r in rows], note)


# --- retention ----------------------------------------------------------------------------------------------------


def _pct(value: float | None, signed: bool = True) -> str:
    return "-" if value is None else (f"{value:+.1%}" if signed else f"{value:.1%}")


def benchmark_names(models: list[Model]) -> list[str]:
    names: list[str] = []
    for m in models:
        for name in (m.retention or {}).get("benchmarks", {}):
            if name not in names:
                names.append(name)
    return names


def primary(result: dict) -> float:
    return result[result["primary"]]["value"]


def comparison(model: Model, name: str) -> dict | None:
    """Paired statistics of `model` against its run's base on one benchmark (None without per-example rows)."""
    if model.base is None:
        return None
    mine = model.retention["benchmarks"].get(name)
    theirs = (model.base.retention or {}).get("benchmarks", {}).get(name)
    if not mine or not theirs:
        return None
    out = {"relative": relative_change(primary(theirs), primary(mine))}
    if "examples" in mine and "examples" in theirs:
        base_rows = {r["id"]: r for r in theirs["examples"]}
        rows = [r for r in mine["examples"] if r["id"] in base_rows]
        key = mine["primary"]
        out["paired"] = paired([float(base_rows[r["id"]][key]) for r in rows], [float(r[key]) for r in rows])
        out["gold_ll"] = paired([base_rows[r["id"]]["gold_ll"] for r in rows], [r["gold_ll"] for r in rows])
    return out


def average_relative_change(model: Model, names: list[str]) -> float | None:
    changes = [c["relative"] for n in names if (c := comparison(model, n)) and c["relative"] is not None]
    return mean(changes) if changes else None


def retention_table(models: list[Model], names: list[str]) -> Table:
    header = ["benchmark", "metric", "n"]
    for m in models:
        header += [m.label] + ([] if m.base is None else [f"Δ {m.label}"])
    rows = []
    for name in names:
        results = [(m, (m.retention or {}).get("benchmarks", {}).get(name)) for m in models]
        first = next(r for _, r in results if r)
        row = [name, first["primary"], str(first.get("n", "-"))]
        for m, r in results:
            value = "-" if not r else (f"{primary(r):.3f} [{r[r['primary']]['ci95'][0]:.3f}, "
                                       f"{r[r['primary']]['ci95'][1]:.3f}]")
            row.append(value)
            if m.base is not None:
                c = comparison(m, name)
                row.append(_pct(c["relative"]) if c else "-")
        rows.append(row)
    average = ["average", "", ""]
    for m in models:
        values = [primary(r) for n in names if (r := (m.retention or {}).get("benchmarks", {}).get(n))]
        average.append(f"{mean(values):.3f}" if values else "-")
        if m.base is not None:
            average.append(_pct(average_relative_change(m, names)))
    rows.append(average)
    note = ("Primary metric per benchmark with its 95% Wilson interval; Δ is the relative change against the base "
            "model of the same run (the paper's performance drop when negative); the average Δ is the mean of "
            "the per-benchmark relative changes.")
    return Table("Retention of general ability", header, rows, note)


def paired_table(models: list[Model], names: list[str]) -> Table:
    header = ["model", "benchmark", "Δ primary ± 1.96 SE", "gained", "lost", "Δ gold log-lik ± 1.96 SE"]
    rows = []
    for m in models:
        if m.base is None or not m.retention:
            continue
        for name in names:
            c = comparison(m, name)
            if not c or "paired" not in c:
                continue
            p, g = c["paired"], c["gold_ll"]
            rows.append([m.label, name, f"{p['diff']:+.3f} ± {1.96 * p['stderr']:.3f}", str(p["gained"]),
                         str(p["lost"]), f"{g['diff']:+.3f} ± {1.96 * g['stderr']:.3f}"])
        kl = m.retention.get("kl")
        if kl and "mean_kl" in kl:
            rows.append([m.label, f"KL from base ({kl['n_prompts']} general prompts, {kl['n_tokens']} tokens)",
                         f"{kl['mean_kl']:.4f} nats/token", "", "", ""])
    note = ("Same documents as the base model: the difference of the primary metric with its paired standard "
            "error, how many documents flipped to correct (gained) or to wrong (lost), and the mean change of "
            "the gold answer's log-likelihood. KL: mean KL(base || model) per token of the base model's own "
            "responses to general prompts (base top-k tokens plus one bucket for the rest: a lower bound).")
    return Table("Paired comparison against the base model", header, rows, note)


# --- training targets and judge -----------------------------------------------------------------------------------


def targets_table(models: list[Model]) -> Table:
    sources = sorted({s for m in models if m.shares for s in m.shares})
    rows = [[m.label, *(_pct(m.shares.get(s, 0.0), signed=False) for s in sources)] for m in models if m.shares]
    return Table("Training targets per method", ["method", *sources], rows,
                 "Share of training targets that are the model's own answers (self) or the gold answers.")


def judge_table(models: list[Model], run_dirs: list[Path]) -> Table:
    rows = []
    for run_dir in run_dirs:
        path = run_dir / "judgments.jsonl"
        if path.exists():
            verdicts = [j["verdict"] for j in iter_jsonl(path)]
            label = "own answers (train)" if len(run_dirs) == 1 else f"{run_dir.name}: own answers (train)"
            rows.append([label, str(len(verdicts)), *(str(verdicts.count(v)) for v in ("accept", "reject", "failed"))])
    for m in models:
        for name, result in m.datasets.items():
            if "verdicts" in result:
                rows.append([f"{m.label}: {name}", str(result["n"]),
                             *(str(result["verdicts"][v]) for v in ("accept", "reject", "failed"))])
    return Table("Judge statistics", ["judged", "n", "accept", "reject", "failed"], rows,
                 "Verdicts on the base model's own answers to the training prompts (judgments.jsonl), and on each "
                 "model's answers to user eval sets.")


# --- figures ------------------------------------------------------------------------------------------------------


def figures(models: list[Model], names: list[str]) -> dict[str, bytes]:
    """PNG figures: task score against retention per model, and per-benchmark change against base."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    if not names:
        return out
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for m in models:
        x = 0.0 if m.base is None else average_relative_change(m, names)
        if x is None or m.task is None:
            continue
        ax.scatter(100 * x, m.task["accuracy"], s=60, label=m.label)
        ax.annotate(m.label, (100 * x, m.task["accuracy"]), textcoords="offset points", xytext=(6, 4))
        if m.ood:
            ax.scatter(100 * x, m.ood["accuracy"], s=60, marker="^", facecolors="none", edgecolors="grey")
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("retention: mean relative change vs base (%)")
    ax.set_ylabel("task accuracy (dots: in domain,\ntriangles: out of domain)")
    ax.margins(x=0.2, y=0.15)
    ax.set_title("Task score against retention")
    fig.tight_layout()
    out["task_vs_retention.png"] = _png(fig)

    methods = [m for m in models if m.base is not None and m.retention]
    if methods:
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names) + 2), 4.2))
        width = 0.8 / len(methods)
        for k, m in enumerate(methods):
            xs, ys, errs = [], [], []
            for i, name in enumerate(names):
                c = comparison(m, name)
                if c and "paired" in c:
                    xs.append(i - 0.4 + width * (k + 0.5))
                    ys.append(100 * c["paired"]["diff"])
                    errs.append(100 * 1.96 * c["paired"]["stderr"])
            ax.bar(xs, ys, width, yerr=errs, capsize=3, label=m.label)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_ylabel("change vs base (points, 95% paired CI)")
        ax.set_title("Per-benchmark change against the base model")
        ax.legend()
        fig.tight_layout()
        out["change_vs_base.png"] = _png(fig)
    plt.close("all")
    return out


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


# --- the report ---------------------------------------------------------------------------------------------------

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.note{color:#555;font-size:.9em}
img{max-width:100%;margin:.5em 1em 1em 0}"""


def build_tables(models: list[Model], run_dirs: list[Path]) -> list[Table]:
    tables = []
    with_task = [{**m.task, "label": m.label, "self_share": m.self_share} for m in models if m.task]
    if with_task:
        n = with_task[0]
        tables.append(task_table("Task: held-out split (in domain)", with_task,
                                 f"{n['n']} examples ({n['n_answerable']} answerable, {n['n_unanswerable']} "
                                 "unanswerable). `ans. recall` is the paper's token recall of the gold answer on "
                                 "answerable questions; `unans.` P/R/F1 score refusing on unanswerable ones; "
                                 "`self targets` is the share of training targets that are the model's own answers."))
    with_ood = [{**m.ood, "label": m.label, "self_share": m.self_share} for m in models if m.ood]
    if with_ood:
        n = with_ood[0]
        tables.append(task_table("Task: out of domain (conversational QA from CoQA)", with_ood,
                                 f"{n['n']} examples ({n['n_answerable']} answerable, {n['n_unanswerable']} "
                                 "unanswerable: CoQA's own `unknown` and passage-swapped questions)."))
    dataset_rows = [[m.label, name, str(r["n"]), f"{r['accuracy']:.3f}"] for m in models
                    for name, r in m.datasets.items() if "accuracy" in r]
    if dataset_rows:
        tables.append(Table("User eval sets (judged)", ["model", "dataset", "n", "accepted"], dataset_rows))
    names = benchmark_names(models)
    if names:
        tables += [retention_table(models, names), paired_table(models, names)]
    if any(m.shares for m in models):
        tables.append(targets_table(models))
    judge = judge_table(models, run_dirs)
    if judge.rows:
        tables.append(judge)
    return tables


def write_report(run_dir: Path | list[Path], out_dir: Path | None = None, console: Console | None = None) -> Path:
    """Write report.md, report.html and figures/*.png into `out_dir` (default: the single run directory)."""
    run_dirs = [Path(p) for p in (run_dir if isinstance(run_dir, list) else [run_dir])]
    if out_dir is None and len(run_dirs) > 1:
        raise ReportError("several runs: say where the report goes (--out DIR)")
    out_dir = Path(out_dir or run_dirs[0])
    models = load_models(run_dirs)
    if not models:
        raise FileNotFoundError(f"{', '.join(map(str, run_dirs))}: no evaluation results yet "
                                "(run `ssrtune evaluate` first)")
    tables = build_tables(models, run_dirs)
    pngs = figures(models, benchmark_names(models))
    for name, data in pngs.items():
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
        (out_dir / "figures" / name).write_bytes(data)
    title = f"ssrtune report: {', '.join(p.name for p in run_dirs)}"
    markdown = f"# {title}\n\n" + "\n".join(t.markdown() for t in tables)
    if pngs:
        markdown += "\n## Figures\n\n" + "".join(f"![{n}](figures/{n})\n\n" for n in pngs)
    write_text_atomic(out_dir / "report.md", markdown)
    images = "".join(f"<img alt='{n}' src='data:image/png;base64,{base64.b64encode(d).decode()}'>"
                     for n, d in pngs.items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            + "".join(t.html() for t in tables) + (f"<h2>Figures</h2>{images}" if pngs else "") + "</body></html>\n")
    write_text_atomic(out_dir / "report.html", page)
    console = _console(console)
    for table in tables:
        table.print(console)
    return out_dir / "report.md"
