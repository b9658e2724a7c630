"""The report on a synthetic run directory: tables, paired numbers by hand, figures, the HTML page."""

import base64
import shutil
import subprocess

import pytest
import yaml

from ssrtune.report import ReportError, write_report
from ssrtune.store import write_json, write_jsonl

TASK = {"n": 4, "n_answerable": 2, "n_unanswerable": 2, "answerable_recall": 0.5, "answerable_accuracy": 0.5,
        "unanswerable_precision": 1.0, "unanswerable_recall": 0.5, "unanswerable_f1": 2 / 3, "accuracy": 0.5}


def retention(correct: list[int], gold_ll: list[float]) -> dict:
    rows = [{"id": str(i), "acc": bool(c), "acc_norm": bool(c), "gold_ll": g} for i, (c, g) in
            enumerate(zip(correct, gold_ll))]
    value = sum(correct) / len(correct)
    return {"benchmarks": {"arc_easy": {"n": len(rows), "split": "validation", "primary": "acc_norm",
                                        "acc": {"value": value, "stderr": 0.1, "ci95": [value - .2, value + .2]},
                                        "acc_norm": {"value": value, "stderr": 0.1, "ci95": [value - .2, value + .2]},
                                        "gold_ll": sum(gold_ll) / len(gold_ll), "examples": rows}},
            "kl": {"mean_kl": 0.0123, "n_prompts": 2, "n_tokens": 10}}


def make_run(root, name="run"):
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"methods": ["sft", "ssr"]}))
    write_jsonl(run / "judgments.jsonl", [{"id": "a", "verdict": "accept"}, {"id": "b", "verdict": "reject"},
                                          {"id": "c", "verdict": "accept"}])
    scores = {"base": ([1, 1, 0, 0, 1], [-1.0, -2.0, -3.0, -4.0, -5.0]),
              "sft": ([1, 0, 0, 0, 0], [-2.0, -3.0, -3.0, -5.0, -6.0]),
              "ssr": ([1, 1, 1, 0, 1], [-1.0, -2.0, -2.5, -4.0, -5.0])}
    for model, (correct, lls) in scores.items():
        write_json(run / "eval" / model / "task.json", {**TASK, "accuracy": 0.25 if model == "base" else 0.75})
        write_json(run / "eval" / model / "ood.json", {**TASK, "examples": []})
        write_json(run / "eval" / model / "retention.json", retention(correct, lls))
    for method, share in (("sft", {"gold": 1.0}), ("ssr", {"gold": 0.4, "self": 0.6})):
        write_json(run / "train" / f"{method}.stats.json", {"method": method, "n": 5, "shares": share})
    return run


def test_report_tables_and_paired_numbers(tmp_path):
    run = make_run(tmp_path)
    write_report(run)
    md = (run / "report.md").read_text()
    # base 0.6 -> sft 0.2: relative change -66.7%; ssr 0.8: +33.3%
    assert "| arc_easy | acc_norm | 5 | 0.600 [0.400, 0.800] | 0.200 [0.000, 0.400] | -66.7% |" in md
    # sft against base: diffs 0,-1,0,0,-1 -> -0.4, sample SD sqrt(0.3), SE sqrt(0.3/5) = 0.2449; 0 gained, 2 lost
    # gold log-likelihood: diffs -1,-1,0,-1,-1 -> -0.8, sample variance 0.2, SE 0.2
    assert "| sft | arc_easy | -0.400 ± 0.480 | 0 | 2 | -0.800 ± 0.392 |" in md
    assert "| ssr | arc_easy | +0.200 ± 0.392 | 1 | 0 | +0.100 ± 0.196 |" in md
    assert "0.0123 nats/token" in md
    assert "| ssr | 40.0% | 60.0% |" in md  # training targets: gold, self
    assert "| own answers (train) | 3 | 2 | 1 | 0 |" in md
    assert "Task: out of domain" in md and "![change_vs_base.png](figures/change_vs_base.png)" in md
    assert (run / "figures" / "task_vs_retention.png").read_bytes().startswith(b"\x89PNG")
    html = (run / "report.html").read_text()
    images = html.split("data:image/png;base64,")[1:]
    assert len(images) == 2 and all(base64.b64decode(i.split("'")[0]).startswith(b"\x89PNG") for i in images)
    assert "src='figures" not in html  # self-contained


def test_report_over_several_runs(tmp_path):
    runs = [make_run(tmp_path, "a"), make_run(tmp_path, "b")]
    with pytest.raises(ReportError, match="--out"):
        write_report(runs)
    write_report(runs, tmp_path / "both")
    md = (tmp_path / "both" / "report.md").read_text()
    assert "| a/ssr | arc_easy |" in md and "| b/sft | arc_easy |" in md


def test_report_command_and_missing_results(tmp_path):
    from typer.testing import CliRunner

    from ssrtune.cli import app

    run = make_run(tmp_path)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "Retention of general ability" in result.output and (run / "report.html").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yaml").write_text("methods: [sft]\n")
    with pytest.raises(FileNotFoundError, match="no evaluation results"):
        write_report(empty)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_html_report_renders_in_headless_chromium(tmp_path):
    run = make_run(tmp_path)
    write_report(run)
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1200,2600", (run / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG")
    # a page that rendered its tables and images is far from blank: many distinct colours in the screenshot
    from matplotlib.image import imread

    pixels = imread(str(shot))
    assert pixels.shape[0] > 1000 and len({tuple(p) for p in pixels[::7, ::7].reshape(-1, pixels.shape[-1])}) > 50
