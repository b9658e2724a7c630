"""The report on synthetic run directories (the JSON files only, no model): task tables with and without the
grounded-QA columns, retention resolved and unresolved, drift, ssr against sft by hand, seeds pooled, report.json,
the figures and the HTML page."""

import base64
import json
import math
import re
import shutil
import subprocess

import pytest

from ssrtune.report import ReportError, write_report
from ssrtune.evaluation.stats import Z95
from ssrtune.storage.artifacts import read_json, write_json, write_jsonl
from tests.synthetic_runs import make_run, table

def test_grounded_task_table_and_wilson_interval(tmp_path):
    run = make_run(tmp_path)
    write_report(run)
    md = (run / "report.md").read_text()
    lines = table(md, "Task: held-out split (in domain)")
    assert lines[0] == ("| model | n | accuracy [95% CI] | ans. recall | ans. acc | unans. P | unans. R | unans. F1 "
                        "| self targets |")
    # 3 of 4: Wilson centre (0.75 + z²/8) / (1 + z²/4), half z / (1 + z²/4) * sqrt(0.75 * 0.25 / 4 + z² / 64)
    centre, half = (0.75 + Z95 ** 2 / 8) / (1 + Z95 ** 2 / 4), Z95 / (1 + Z95 ** 2 / 4) * math.sqrt(
        0.75 * 0.25 / 4 + Z95 ** 2 / 64)
    assert (round(centre - half, 3), round(centre + half, 3)) == (0.301, 0.954)
    assert "| ssr | 4 | 0.750 [0.301, 0.954] | 0.500 | 0.500 | 1.000 | 0.500 | 0.667 | 60.0% |" in lines
    assert "2 answerable, 2 unanswerable" in md and "Scored by: contains." in md


def test_task_without_unanswerable_examples_has_no_grounded_columns(tmp_path):
    run = make_run(tmp_path, grounded=False)
    (run / "eval" / "base" / "scores.jsonl").unlink()  # no rows: the interval comes from n and accuracy
    write_report(run)
    md = (run / "report.md").read_text()
    for title in ("Task: held-out split (in domain)", "Task: out of domain (conversational QA from CoQA)"):
        lines = table(md, title)
        assert lines[0].startswith("| model | n | accuracy [95% CI] |") and "ans." not in "".join(lines)
    assert "| base | 4 | 0.250 [0.046, 0.699] | - |" in md  # from n and accuracy; base has no training targets
    report = read_json(run / "report.json")
    assert "grounded" not in report["models"][0]["task"]


def test_retention_resolved_and_unresolved(tmp_path):
    run = make_run(tmp_path)
    write_report(run)
    md = (run / "report.md").read_text()
    paired = table(md, "Paired comparison against the base model")
    # arc_easy, 5 documents: sft against base diffs 0,-1,0,0,-1 -> -0.4, SE sqrt(0.3/5): far wider than ±3 points
    se = math.sqrt(0.3 / 5)
    low, high = 100 * (-0.4 - Z95 * se), 100 * (-0.4 + Z95 * se)
    assert f"| sft | arc_easy | -40.0 pts [{low:+.1f}, {high:+.1f}] | unresolved | 0 | 2 |" in "\n".join(paired)
    # hellaswag, 1,000 documents: 50 lost -> -5 points, SE sqrt(0.05 * 0.95 * 1000 / 999 / 1000): resolved
    se = math.sqrt((50 * 0.95 ** 2 + 950 * 0.05 ** 2) / 999 / 1000)
    assert f"| sft | hellaswag | -5.0 pts [{100 * (-0.05 - Z95 * se):+.1f}, {100 * (-0.05 + Z95 * se):+.1f}] | " \
           "resolved | 0 | 50 |" in "\n".join(paired)
    # no change at all: the interval is 0 wide but contains 0, so it resolves nothing
    assert "| ssr | hellaswag | +0.0 pts [+0.0, +0.0] | unresolved | 0 | 0 |" in "\n".join(paired)
    retention = table(md, "Retention of general ability")
    assert retention[0] == "| benchmark | metric | n | base | sft | Δ sft | ssr | Δ ssr |"
    assert "(-66.7%) unresolved" in retention[2]
    assert retention[3].split(" | ")[5] == "-5.0 pts [-6.4, -3.6] (-7.1%)"
    report = read_json(run / "report.json")
    sft = report["models"][1]["retention"]
    assert sft["hellaswag"]["change"]["resolved"] and not sft["arc_easy"]["change"]["resolved"]
    assert not report["models"][1]["retention_average"]["resolved"]
    # retention accuracy is never plotted: the figures are drift and the gold answers' log-likelihood
    assert sorted(p.name for p in (run / "figures").iterdir()) == ["gold_ll_change.png", "task_vs_drift.png"]


def test_drift_headline_and_console_summary(tmp_path, capsys):
    run = make_run(tmp_path)
    write_report(run)
    md = (run / "report.md").read_text()
    drift = table(md, "Drift from the base model")
    # sft per prompt .03 .05 .04: mean .04, SE 0.01 / sqrt(3); gold log-lik: arc -0.8 (SE 0.2), hellaswag 0 (SE 0)
    se = 0.01 / math.sqrt(3)
    assert f"| sft | 0.0400 [{0.04 - Z95 * se:.4f}, {0.04 + Z95 * se:.4f}] | 3 | 0.0400 | " \
           f"-0.400 [{-0.4 - Z95 * 0.1:+.3f}, {-0.4 + Z95 * 0.1:+.3f}] | 2 |" in drift
    assert "| base | 0 (reference) | 3 | - | - | - |" in drift
    out = capsys.readouterr().out
    assert "Summary" in out and "0.0400 [" in out and "mean over arc_easy, hellaswag" in out
    assert "Retention of general ability" not in out  # the console shows the summary, the files hold the tables


def test_the_console_summary_leaves_out_the_drift_columns_of_a_run_without_retention(tmp_path, capsys):
    run = make_run(tmp_path)
    for model in ("base", "sft", "ssr"):
        (run / "eval" / model / "retention.json").unlink()
    write_report(run)
    header = next(line for line in capsys.readouterr().out.splitlines() if "task accuracy" in line)
    assert "self targets" in header and "KL from base" not in header and "gold log-lik" not in header


def test_notes_describe_only_what_ran_and_the_page_shows_code_as_code(tmp_path):
    run = make_run(tmp_path)
    for model in ("base", "sft", "ssr"):  # KL only: no retention benchmark ran
        retention = read_json(run / "eval" / model / "retention.json")
        write_json(run / "eval" / model / "retention.json", {**retention, "benchmarks": {}})
    write_report(run)
    md = (run / "report.md").read_text()
    drift = md.split("## Drift from the base model\n", 1)[1].split("\n## ", 1)[0]  # its note and its table
    assert "KL(base || model)" in drift and "gold" not in drift
    assert table(md, "Drift from the base model")[0] == "| model | KL from base [95% CI] | prompts | KL per token |"
    page = (run / "report.html").read_text()
    assert "<code>per token</code>" in page and "`" not in page


def test_ssr_against_sft_by_hand(tmp_path):
    run = make_run(tmp_path)
    write_report(run)
    md = (run / "report.md").read_text()
    rows = "\n".join(table(md, "Method against method: ssr − sft (LoRA)"))
    # task: ssr 1,1,0,1 against sft 1,0,0,0 -> diffs 0,1,0,1: mean .5, sample variance 1/3, SE sqrt(1/12)
    se = math.sqrt(1 / 12)
    assert f"| task accuracy (in domain) | 4 | 0.750 | 0.250 | +50.0 pts [{100 * (.5 - Z95 * se):+.1f}, " \
           f"{100 * (.5 + Z95 * se):+.1f}] | unresolved |" in rows
    # KL per prompt: diffs -.02, -.03, -.01 -> -0.02, SE 0.01 / sqrt(3): the interval excludes 0
    se = 0.01 / math.sqrt(3)
    assert f"| KL from base (nats/token) | 3 | 0.0200 | 0.0400 | -0.0200 [{-0.02 - Z95 * se:+.4f}, " \
           f"{-0.02 + Z95 * se:+.4f}] | resolved |" in rows
    # gold log-lik on arc_easy: ssr - sft = 1, 1, 0.5, 1, 1 -> 0.9, sample variance 0.05, SE 0.1
    assert f"| arc_easy: gold log-lik | 5 | -2.900 | -3.800 | +0.900 [{0.9 - Z95 * 0.1:+.3f}, " \
           f"{0.9 + Z95 * 0.1:+.3f}] | resolved |" in rows
    # means over the two benchmarks: gold log-lik (0.9 + 0) / 2, SE sqrt(0.1² + 0²) / 2
    assert "| gold log-lik (mean over benchmarks) | 2 | " in rows and f"+0.450 [{0.45 - Z95 * 0.05:+.3f}, " in rows
    reading = read_json(run / "report.json")["reading"]
    assert reading[0].startswith("ssr vs sft (LoRA): task accuracy 0.750 vs 0.250, no resolved difference")
    assert "ssr drifts less than sft: KL 0.0200 [" in reading[0] and "3 prompts" in reading[0]
    assert "retention accuracy: unresolved at this size" in reading[0]


def test_no_resolved_difference_is_said_so(tmp_path):
    run = make_run(tmp_path, kl={"sft": [0.01, 0.05, 0.03], "ssr": [0.02, 0.03, 0.04]})
    write_report(run)
    reading = read_json(run / "report.json")["reading"][0]
    assert "drift: no resolved difference" in reading and "drifts less" not in reading


def test_two_seeds_pooled_per_document(tmp_path):
    # seed a: ssr - sft on q0..q3 = 0,1,0,1; seed b: ssr right on q0,q1 only, sft on all -> 0,0,-1,-1;
    # per document averaged over seeds: 0, .5, -.5, 0 -> mean 0, sample variance 1/6, SE sqrt(1/24); n = 4 documents
    runs = [make_run(tmp_path, "a"),
            make_run(tmp_path, "b", task={"base": [1, 0, 0, 0], "sft": [1, 1, 1, 1], "ssr": [1, 1, 0, 0]})]
    with pytest.raises(ReportError, match="--out"):
        write_report(runs)
    write_report(runs, tmp_path / "both")
    report = read_json(tmp_path / "both" / "report.json")
    task = report["comparisons"][0]["task"]
    assert task["n"] == 4 and task["replicates"] == 2 and task["diff"] == pytest.approx(0.0)
    assert task["stderr"] == pytest.approx(math.sqrt(1 / 24))
    assert [r["diff"] for r in task["per_replicate"]] == pytest.approx([0.5, -0.5])
    assert [r["replicate"] for r in task["per_replicate"]] == ["a seed 0", "b seed 0"]
    md = (tmp_path / "both" / "report.md").read_text()
    assert "(a seed 0, b seed 0); pooled over the 2 replicates" in md
    assert "| · a seed 0 | 4 | 0.750 | 0.250 | +50.0 pts [" in md and "| · b seed 0 | 4 | 0.500 | 1.000 | -50.0 pts [" in md
    assert "| a/ssr | arc_easy |" in md and "| b/sft | arc_easy |" in md
    assert report["reading"][0].startswith("ssr vs sft (LoRA, 2 replicates pooled): ")


def test_documents_found_in_one_run_only_count_once(tmp_path):
    runs = [make_run(tmp_path, "a"), make_run(tmp_path, "b", task_ids=["q0", "q1", "x2", "x3"])]
    write_report(runs, tmp_path / "both")
    task = read_json(tmp_path / "both" / "report.json")["comparisons"][0]["task"]
    # q0, q1 in both runs (diffs 0, 1 each time); q2, q3 only in a (0, 1), x2, x3 only in b (0, 1)
    assert task["n"] == 6 and task["diff"] == pytest.approx(0.5)


def test_report_json_holds_every_number_the_tables_show(tmp_path):
    runs = [make_run(tmp_path, "a"), make_run(tmp_path, "b")]
    write_report(runs, tmp_path / "both")
    md = (tmp_path / "both" / "report.md").read_text()
    numbers = []

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            numbers.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(read_json(tmp_path / "both" / "report.json"))
    cells = [c for line in md.splitlines() if line.startswith("| ") and "---" not in line for c in line.split(" | ")]
    tokens = [t for c in cells for t in re.findall(r"[+-]?\d+\.\d+%?", c)]
    assert len(tokens) > 100
    for token in tokens:
        digits = len(token.rstrip("%").split(".")[1])
        value = float(token.rstrip("%"))
        scale = 100 if token.endswith("%") or digits == 1 else 1  # percentages and points
        assert any(abs(scale * n - value) <= 0.5 * 10 ** -digits + 1e-9 for n in numbers), token


def test_bad_results_name_the_file_and_field(tmp_path):
    run = make_run(tmp_path)
    write_json(run / "eval" / "sft" / "task.json", {"n": 4})
    with pytest.raises(ReportError, match=r"eval/sft/task\.json: field `accuracy`"):
        write_report(run)
    write_json(run / "eval" / "sft" / "task.json", {"n": 4, "accuracy": 0.25})
    write_jsonl(run / "eval" / "sft" / "scores.jsonl", [{"id": "q0", "correct": True}, {"id": "q1"},
                                                        {"id": "q2", "correct": False}, {"id": "q3", "correct": 0}])
    with pytest.raises(ReportError, match=r"eval/sft/scores\.jsonl, row 2: no `correct` field"):
        write_report(run)
    assert not (run / "report.md").exists()  # nothing half-written


def test_report_command_and_missing_results(tmp_path):
    from typer.testing import CliRunner

    from ssrtune.cli import app

    run = make_run(tmp_path)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "Summary" in result.output and "ssr vs sft (LoRA):" in result.output and (run / "report.html").exists()
    html = (run / "report.html").read_text()
    images = html.split("data:image/png;base64,")[1:]
    assert len(images) == 2 and all(base64.b64decode(i.split("'")[0]).startswith(b"\x89PNG") for i in images)
    assert "src='figures" not in html and "Method against method: ssr − sft (LoRA)" in html  # self-contained
    assert json.loads((run / "report.json").read_text())["runs"] == [{"name": "run", "path": str(run)}]
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


def test_harness_results_without_documents_show_no_paired_numbers(tmp_path):
    # lm-evaluation-harness results keep no per-document rows and no KL: values and relative changes only
    run = make_run(tmp_path)
    for model, value in (("base", 0.5), ("sft", 0.4), ("ssr", 0.5)):
        metric = {"value": value, "stderr": 0.05, "ci95": [value - 0.098, value + 0.098]}
        write_json(run / "eval" / model / "retention.json",
                   {"backend": "lm-eval", "benchmarks": {"piqa": {"split": "lm-eval", "primary": "acc", "acc": metric}}})
    write_report(run)
    md = (run / "report.md").read_text()
    assert "| piqa | acc | - | 0.500 [0.402, 0.598] | 0.400 [0.302, 0.498] | -20.0% |" in md
    assert "Paired comparison against the base model" not in md and "Drift from the base model" not in md
    assert not (run / "figures").exists() or not any((run / "figures").iterdir())
