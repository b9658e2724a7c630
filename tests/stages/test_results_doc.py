"""docs/RESULTS.md from a run directory (`ssrtune results`), on synthetic result files: the design included verbatim,
pending models named, the primary endpoints' rule for "resolved" (the pooled interval excludes 0 and every seed agrees),
the minimum detectable effects against a hand computation, and the figures."""

import math

import yaml
from typer.testing import CliRunner

from ssrtune.cli import app
from ssrtune.evaluation.stats import Z95
from ssrtune.report.endpoints import Z_POWER80, non_inferior, resolved
from ssrtune.report.results_doc import write_results
from ssrtune.storage.artifacts import read_json, write_json
from tests.synthetic_runs import ARC, benchmark, table, write_task

DESIGN = "# Pre-registered design\n\nPrimary endpoints: KL, IFEval, retention, task (margin −0.05).\n\n| a | b |\n|---|---|\n"
IFEVAL = {"base": [1, 0, 1, 1, 0, 1, 0, 1], "sft": [1, 0, 0, 1, 0, 0, 0, 1], "ssr": [1, 0, 1, 1, 0, 1, 0, 0]}
MODELS = {  # name: (method, seed, task correct on q0..q3, KL per prompt)
    "sft-s0": ("sft", 0, [1, 0, 0, 0], [0.20, 0.21, 0.22, 0.23]),
    "sft-s1": ("sft", 1, [1, 1, 0, 0], [0.10, 0.10, 0.10, 0.10]),
    "ssr-s0": ("ssr", 0, [1, 1, 0, 1], [0.10, 0.10, 0.11, 0.12]),  # ssr - sft: -.10 -.11 -.11 -.11
    "ssr-s1": ("ssr", 1, [1, 1, 1, 0], [0.11, 0.12, 0.11, 0.12]),  # ssr - sft: +.01 +.02 +.01 +.02
}
PENDING = {"sft_rejected-s0": ("sft_rejected", 0), "sft_rejected-s1": ("sft_rejected", 1)}


def ifeval(correct: list[int]) -> dict:
    rows = [{"id": f"p{i}", "prompt_level_strict_acc": float(c), "gold_ll": 0.0} for i, c in enumerate(correct)]
    value = sum(correct) / len(correct)
    return {"n": len(rows), "primary": "prompt_level_strict_acc", "examples": rows,
            "prompt_level_strict_acc": {"value": value, "stderr": 0.1, "ci95": [value - .2, value + .2]}}


def make_experiment(root, with_ifeval=True):
    """A run of two seeds of sft and ssr, evaluated, and two sft_rejected models not yet evaluated."""
    run = root / "reproduce"
    entries = {name: (method, seed) for name, (method, seed, _, _) in MODELS.items()} | PENDING
    config = {"train": {"seed": 0}, "models": [{"name": n, "method": m, "train": {"seed": s}}
                                               for n, (m, s) in entries.items()]}
    (run / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    for name, (method, _, task, kl) in {"base": ("base", None, [1, 0, 0, 0], None), **MODELS}.items():
        folder = run / "eval" / name
        write_task(folder, "task", task, grounded=False)
        kl_result = ({"reference": "x", "mean_kl": 0.0, "n_prompts": 4} if kl is None else
                     {"mean_kl": sum(kl) / 4, "per_prompt": kl, "n_prompts": 4, "n_tokens": 40})
        benchmarks = {"arc_easy": benchmark(*ARC[method]), **({"ifeval": ifeval(IFEVAL[method])} if with_ifeval else {})}
        write_json(folder / "retention.json", {"benchmarks": benchmarks, "kl": kl_result})
    for method, share in (("sft", {"gold": 1.0}), ("ssr", {"gold": 0.4, "self": 0.6})):
        write_json(run / "train" / f"{method}.stats.json", {"method": method, "n": 5, "shares": share})
    return run


def results(tmp_path, run, **options):
    design = tmp_path / "design.md"
    design.write_text(DESIGN)
    out = tmp_path / "docs" / "RESULTS.md"
    write_results(run, design, out, margin=-0.05, **options)
    return out.read_text()


def test_the_design_comes_first_verbatim_and_pending_models_are_named(tmp_path):
    run = make_experiment(tmp_path)
    (run / "eval" / "ssr-s1" / "retention.json").unlink()  # evaluated in part
    write_json(run / "provenance.json", {"ssr-s0": {"commit": "abc123", "cpu": "avx512_bf16"}})
    md = results(tmp_path, run)
    assert md.startswith(DESIGN)
    rows = table(md, "Models")
    assert rows[0] == "| model | method | setting | seed | status | commit | cpu |"
    assert "| sft_rejected-s0 | sft_rejected | LoRA | 0 | **pending** | - | - |" in rows
    assert "| sft_rejected-s1 | sft_rejected | LoRA | 1 | **pending** | - | - |" in rows
    assert "| ssr-s0 | ssr | LoRA | 0 | done | abc123 | avx512_bf16 |" in rows
    assert "| ssr-s1 | ssr | LoRA | 1 | partial (no retention) | - | - |" in rows


def test_a_run_with_no_results_yet_is_all_pending(tmp_path):
    run = make_experiment(tmp_path)
    for folder in (run / "eval").iterdir():
        for path in folder.iterdir():
            path.unlink()
    md = results(tmp_path, run)
    assert "every row is pending" in md
    assert all("**pending**" in row for row in table(md, "Models")[2:])
    assert [r.split(" | ")[2] for r in table(md, "Minimum detectable effects")[2:]] == ["pending"] * 4
    assert "## Primary endpoints" not in md and not (tmp_path / "docs" / "results" / "task_vs_kl.png").exists()


def test_resolved_needs_the_pooled_interval_off_zero_and_every_seed_agreeing(tmp_path):
    one_seed_disagrees = {"diff": -0.046, "ci95": [-0.05, -0.042],
                          "per_replicate": [{"diff": -0.1075}, {"diff": 0.015}]}
    assert not resolved(one_seed_disagrees)
    assert resolved({**one_seed_disagrees, "per_replicate": [{"diff": -0.1}, {"diff": -0.01}]})
    assert not resolved({**one_seed_disagrees, "ci95": [-0.09, 0.001],
                         "per_replicate": [{"diff": -0.1}, {"diff": -0.01}]})

    # non-inferior at -0.05: the pooled interval's lower end and every seed's difference above the margin
    assert non_inferior({"ci95": [-0.04, 0.1], "per_replicate": [{"diff": 0.0}, {"diff": -0.03}]}, -0.05)
    assert not non_inferior({"ci95": [-0.06, 0.1], "per_replicate": [{"diff": 0.0}, {"diff": 0.01}]}, -0.05)
    assert not non_inferior({"ci95": [-0.04, 0.1], "per_replicate": [{"diff": 0.05}, {"diff": -0.07}]}, -0.05)

    md = results(tmp_path, make_experiment(tmp_path))
    rows = table(md, "Primary endpoints")
    # KL, per prompt averaged over the seeds: -.045 -.045 -.05 -.045: the interval excludes 0, but seed 1 is +
    kl = next(r for r in rows if "KL from base" in r)
    assert kl.startswith("| ssr − sft (LoRA) | KL from base (nats/token) | 4 | -0.046")  # -0.04625
    assert kl.endswith("| − + | unresolved |")
    # task: seed 0 +50 points, seed 1 +25; per document 0, .5, .5, .5: +37.5 pts, SE .25 / 2, and both seeds agree
    task = next(r for r in rows if "task accuracy" in r)
    low, high = 100 * (.375 - Z95 * .125), 100 * (.375 + Z95 * .125)
    assert task.endswith(f"| 4 | +37.5 pts [{low:+.1f}, {high:+.1f}] | + + | resolved; non-inferior at -0.05: yes |")
    assert "| ssr − sft (LoRA) | instruction following: Δ ifeval | 8 | +12.5 pts [" in "\n".join(rows)
    assert not any("sft_rejected" in r for r in rows)  # pending: no pair to compare yet
    suites = table(md, "Task accuracy on every judged suite")
    assert [r.split(" | ")[1] for r in suites[2:]] == ["task"]


def test_minimum_detectable_effects_by_hand(tmp_path):
    md = results(tmp_path, make_experiment(tmp_path))
    rows = {r.split(" | ")[0][2:]: r.split(" | ") for r in table(md, "Minimum detectable effects")[2:]}
    z = Z95 + Z_POWER80  # 1.96 + 0.84
    # task: base 1 of 4 right, Bernoulli sd sqrt(.25 * .75), two independent models: sqrt(2) sd / sqrt(4)
    assert rows["task accuracy (in domain)"][2] == f"{100 * z * math.sqrt(2 * .25 * .75 / 4):.1f} pts"
    # ifeval: base 5 of 8
    assert rows["instruction following: Δ ifeval"][2] == f"{100 * z * math.sqrt(2 * 5 / 8 * 3 / 8 / 8):.1f} pts"
    # retention (arc_easy only, ifeval left out): the base's 1,1,0,0,1, sample variance .3, over 5 documents
    assert rows["retention: mean Δ accuracy over benchmarks"][2] == f"{100 * z * math.sqrt(2 * .3 / 5):.1f} pts"
    # KL: seed 0's per-prompt differences -.10 -.11 -.11 -.11: sample SD .005, over 4 prompts
    assert rows["KL from base (nats/token)"][2] == f"{z * .005 / 2:.4f}"
    assert rows["KL from base (nats/token)"][3].startswith("ssr − sft (LoRA, seed 0)")


def test_no_minimum_detectable_effect_without_the_base_documents(tmp_path):
    """Harness results without per-document rows, and an empty task: nothing to estimate from, said as pending."""
    run = make_experiment(tmp_path)
    base = run / "eval" / "base"
    retention = read_json(base / "retention.json")
    del retention["benchmarks"]["ifeval"]["examples"]
    write_json(base / "retention.json", retention)
    write_json(base / "task.json", {"n": 0, "accuracy": 0.0})
    (base / "scores.jsonl").write_text("")
    rows = {r.split(" | ")[0][2:]: r.split(" | ")[2] for r in table(results(tmp_path, run), "Minimum detectable "
                                                                                          "effects")[2:]}
    assert rows["instruction following: Δ ifeval"] == rows["task accuracy (in domain)"] == "pending"


def test_figures_one_point_per_model_written_and_linked(tmp_path):
    md = results(tmp_path, make_experiment(tmp_path))
    figures = tmp_path / "docs" / "results"
    assert sorted(p.name for p in figures.iterdir()) == ["task_vs_ifeval.png", "task_vs_kl.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in figures.iterdir())
    assert "![task_vs_kl.png](results/task_vs_kl.png)" in md and "(results/task_vs_ifeval.png)" in md
    # without an ifeval benchmark the IFEval figure is not drawn, and the one drawn before is removed
    md = results(tmp_path, make_experiment(tmp_path / "again", with_ifeval=False))
    assert sorted(p.name for p in figures.iterdir()) == ["task_vs_kl.png"] and "task_vs_ifeval" not in md


def test_command_line(tmp_path):
    run = make_experiment(tmp_path)
    design, discussion = tmp_path / "design.md", tmp_path / "discussion.md"
    design.write_text(DESIGN)
    discussion.write_text("## Discussion\n\nWritten by hand.\n")
    out = tmp_path / "RESULTS.md"
    args = ["results", str(run), "--design", str(design), "--out", str(out), "--figures", str(tmp_path / "figs")]
    result = CliRunner().invoke(app, [*args, "--margin", "-0.05", "--discussion", str(discussion),
                                      "--pair", "ssr:sft", "--pair", "ssr:sft_rejected"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith(DESIGN) and text.endswith("## Discussion\n\nWritten by hand.\n")
    assert "](figs/task_vs_kl.png)" in text and (tmp_path / "figs" / "task_vs_kl.png").exists()
    refused = CliRunner().invoke(app, [*args, "--margin", "0.05"])
    assert refused.exit_code != 0 and "must be below 0" in str(refused.exception)
    bad_pair = CliRunner().invoke(app, [*args, "--margin", "-0.05", "--pair", "ssr"])
    assert bad_pair.exit_code != 0 and "a:b" in bad_pair.output


def test_a_reading_is_interim_while_seeds_of_the_pair_are_pending(tmp_path):
    run = make_experiment(tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["models"] += [{"name": f"{m}-s2", "method": m, "train": {"seed": 2}} for m in ("sft", "ssr")]
    (run / "config.yaml").write_text(yaml.safe_dump(config))  # a third seed named, not yet run
    rows = table(results(tmp_path, run), "Primary endpoints")
    task = next(r for r in rows if "task accuracy" in r)
    assert task.endswith("| + + | interim (2 of 3 seeds): resolved; non-inferior at -0.05: yes |")
    assert all("interim (2 of 3 seeds)" in r for r in rows[2:])
