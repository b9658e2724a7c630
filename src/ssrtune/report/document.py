"""The report of one or more runs: report.json (every number), report.md with figures/*.png beside it, a
self-contained report.html (figures embedded as base64 PNG), and the summary on the console."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from rich.console import Console

from ssrtune.report.analysis import RESOLUTION, benchmark_names, judge_summary, model_summary
from ssrtune.report.comparison import DEFAULT_PAIRS, comparisons
from ssrtune.report.figures import figures
from ssrtune.report.groups import groups
from ssrtune.report.results import ReportError, load_models
from ssrtune.report.sections import build_tables
from ssrtune.report.summary import print_summary, reading
from ssrtune.report.tables import wide_console
from ssrtune.storage.artifacts import write_json, write_text_atomic
from ssrtune.evaluation.stats import Z95

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.note{color:#555;font-size:.9em}
img{max-width:100%;margin:.5em 1em 1em 0}"""

STATISTICS = {
    "interval": "95%, normal (z = {z:.4f}) for means of paired differences and of per-prompt KL (narrower than "
                "Student's t with few units, e.g. 6 prompts); Wilson for shares",
    "paired": "difference = mean over documents of (model - reference) on the same documents; stderr = sample SD "
              "(n - 1) / sqrt(n)",
    "pooled_over_benchmarks": "mean of the per-benchmark differences (each benchmark weighs the same); stderr = "
                              "sqrt(sum of the benchmarks' stderr^2) / number of benchmarks",
    "pooled_over_replicates": "replicates are the models of one method and setting (seeds, runs); each document's "
                              "value or difference averaged over the replicates holding it, then the interval over "
                              "documents (prompts for KL)",
    "retention_resolved": "the 95% interval excludes 0 and its half-width is at most {resolution} points",
}


def analyse(run_dirs: list[Path], pairs=DEFAULT_PAIRS) -> dict:
    """Every number the report shows, as one JSON-ready dict (written as report.json)."""
    models = load_models(run_dirs)
    if not models:
        raise FileNotFoundError(f"{', '.join(map(str, run_dirs))}: no evaluation results yet "
                                "(run `ssrtune evaluate` first)")
    names = benchmark_names(models)
    compared = comparisons(models, pairs)
    statistics = {k: v.format(z=Z95, resolution=f"{100 * RESOLUTION:g}") for k, v in STATISTICS.items()}
    return {"runs": [{"name": p.name, "path": str(p)} for p in run_dirs], "statistics": statistics,
            "benchmarks": names, "models": [model_summary(m, names) for m in models],
            "groups": groups(models, names), "comparisons": compared,
            "judge": judge_summary(models, run_dirs), "reading": [reading(c) for c in compared]}


def write_report(run_dir: Path | list[Path], out_dir: Path | None = None, console: Console | None = None,
                 pairs=DEFAULT_PAIRS) -> Path:
    """Write report.json, report.md, report.html and figures/*.png into `out_dir` (default: the single run
    directory), print the summary, and return the path of report.md. `pairs`: the (method, method) comparisons."""
    run_dirs = [Path(p) for p in (run_dir if isinstance(run_dir, list) else [run_dir])]
    if out_dir is None and len(run_dirs) > 1:
        raise ReportError("several runs: say where the report goes (--out DIR)")
    out_dir = Path(out_dir or run_dirs[0])
    analysis = analyse(run_dirs, pairs)
    tables = build_tables(analysis)
    pngs = figures(analysis)
    for name, data in pngs.items():
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
        (out_dir / "figures" / name).write_bytes(data)
    write_json(out_dir / "report.json", analysis)
    title = f"ssrtune report: {', '.join(p.name for p in run_dirs)}"
    markdown = f"# {title}\n\n"
    if analysis["reading"]:
        markdown += "## Reading\n\n" + "".join(f"- {line}\n" for line in analysis["reading"]) + "\n"
    if pngs:
        markdown += "## Figures\n\n" + "".join(f"![{n}](figures/{n})\n\n" for n in pngs)
    markdown += "\n".join(t.markdown() for t in tables)
    write_text_atomic(out_dir / "report.md", markdown)
    write_text_atomic(out_dir / "report.html", page(title, analysis["reading"], pngs, tables))
    print_summary(analysis, wide_console(console))
    return out_dir / "report.md"


def page(title: str, lines: list[str], pngs: dict[str, bytes], tables: list) -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    images = "".join(f"<img alt='{n}' src='data:image/png;base64,{base64.b64encode(d).decode()}'>"
                     for n, d in pngs.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            + (f"<h2>Reading</h2><ul>{items}</ul>" if lines else "")
            + (f"<h2>Figures</h2>{images}" if pngs else "")
            + "".join(t.html() for t in tables) + "</body></html>\n")
