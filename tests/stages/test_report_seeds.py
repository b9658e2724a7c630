"""The report of a run with several models per method (seeds, LoRA and full fine-tuning), on synthetic result
files: method against method paired by setting and seed and pooled over seeds, with the seeds' own rows; each
method and setting pooled; the per-model tables naming method, setting and seed."""

import math

import pytest
import yaml

from ssrtune.report import write_report
from ssrtune.evaluation.stats import Z95
from ssrtune.storage.artifacts import read_json, write_json
from tests.synthetic_runs import ARC, benchmark, table, write_task

FULL = {"full": True, "learning_rate": 2.0e-5}
MODELS = {  # name: (method, train overrides, task correct on q0..q3, KL per prompt)
    "sft-s0": ("sft", {}, [1, 0, 0, 0], [0.03, 0.05, 0.04]),
    "sft-s1": ("sft", {"seed": 1}, [1, 1, 1, 1], [0.05, 0.07, 0.06]),
    "ssr-s0": ("ssr", {}, [1, 1, 0, 1], [0.01, 0.02, 0.03]),
    "ssr-s1": ("ssr", {"seed": 1}, [1, 1, 0, 0], [0.03, 0.02, 0.01]),
    "sft-full": ("sft", FULL, [0, 0, 0, 0], [0.2, 0.3, 0.4]),
    "ssr-full": ("ssr", FULL, [1, 1, 1, 1], [0.1, 0.1, 0.1]),
}


def make_seeded_run(root):
    run = root / "seeds"
    config = {"train": {"seed": 0, "full": False, "learning_rate": 2.0e-4},
              "models": [{"name": n, "method": m, "train": t} for n, (m, t, _, _) in MODELS.items()]}
    (run / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    for name, (method, _, task, kl) in {"base": ("base", {}, [1, 0, 0, 0], None), **MODELS}.items():
        folder = run / "eval" / name
        write_task(folder, "task", task, grounded=False)
        kl_result = ({"reference": "x", "mean_kl": 0.0, "n_prompts": 3} if kl is None else
                     {"mean_kl": sum(kl) / 3, "per_prompt": kl, "n_prompts": 3, "n_tokens": 30})
        write_json(folder / "retention.json", {"benchmarks": {"arc_easy": benchmark(*ARC[method])}, "kl": kl_result})
    for method, share in (("sft", {"gold": 1.0}), ("ssr", {"gold": 0.4, "self": 0.6})):
        write_json(run / "train" / f"{method}.stats.json", {"method": method, "n": 5, "shares": share})
    return run


def test_methods_are_compared_per_setting_paired_by_seed_and_pooled_over_seeds(tmp_path):
    run = make_seeded_run(tmp_path)
    write_report(run)
    report = read_json(run / "report.json")
    lora, full = report["comparisons"]
    assert (lora["setting"], full["setting"]) == ("LoRA", "full, learning_rate=2e-05")
    # seed 0: ssr - sft per document 0, 1, 0, 1; seed 1: 0, 0, -1, -1; averaged per document: 0, .5, -.5, 0
    assert lora["replicates"] == ["seed 0", "seed 1"]
    task = lora["task"]
    assert task["n"] == 4 and task["diff"] == pytest.approx(0.0) and task["stderr"] == pytest.approx(math.sqrt(1 / 24))
    assert [(r["replicate"], r["diff"]) for r in task["per_replicate"]] == [("seed 0", 0.5), ("seed 1", -0.5)]
    assert task["per_replicate"][0]["stderr"] == pytest.approx(math.sqrt(1 / 12))  # each seed's own paired SE
    # KL per prompt, seeds averaged: ssr .02 .02 .02, sft .04 .06 .05 -> -.02 -.04 -.03
    assert lora["kl"]["diff"] == pytest.approx(-0.03) and lora["kl"]["resolved"]
    assert full["replicates"] == ["seed 0"] and full["task"]["diff"] == pytest.approx(1.0)
    assert report["reading"][0].startswith("ssr vs sft (LoRA, 2 seeds pooled): ")
    assert report["reading"][1].startswith("ssr vs sft (full, learning_rate=2e-05): ")

    md = (run / "report.md").read_text()
    rows = table(md, "Method against method: ssr − sft (LoRA)")
    se = math.sqrt(1 / 12)
    assert f"| · seed 0 | 4 | 0.750 | 0.250 | +50.0 pts [{100 * (.5 - Z95 * se):+.1f}, {100 * (.5 + Z95 * se):+.1f}] " \
           "| unresolved |" in rows
    assert "| · seed 1 | 4 | 0.500 | 1.000 | -50.0 pts [" in "\n".join(rows)
    assert "## Method against method: ssr − sft (full, learning_rate=2e-05)" in md
    assert not [r for r in table(md, "Method against method: ssr − sft (full, learning_rate=2e-05)") if "· seed" in r]


def test_each_method_and_setting_is_pooled_over_its_seeds(tmp_path):
    run = make_seeded_run(tmp_path)
    write_report(run)
    report = read_json(run / "report.json")
    groups = {g["label"]: g for g in report["groups"]}
    assert list(groups) == ["base", "sft (LoRA)", "ssr (LoRA)", "sft (full, learning_rate=2e-05)",
                            "ssr (full, learning_rate=2e-05)"]
    sft = groups["sft (LoRA)"]
    assert sft["models"] == ["sft-s0", "sft-s1"] and sft["replicates"] == ["seed 0", "seed 1"]
    # per document over the seeds: 1, .5, .5, .5 -> .625, SE sd / 2 with sd = sqrt(.0625 * 4 / 3 ... )
    values = [1, .5, .5, .5]
    sd = math.sqrt(sum((v - .625) ** 2 for v in values) / 3)
    assert sft["task"]["mean"] == pytest.approx(.625) and sft["task"]["stderr"] == pytest.approx(sd / 2)
    # KL per prompt averaged over the seeds: .04, .06, .05 -> .05, SE .01 / sqrt(3)
    assert sft["kl"]["mean"] == pytest.approx(.05) and sft["kl"]["stderr"] == pytest.approx(.01 / math.sqrt(3))
    # arc_easy against the base, both seeds alike: 0, -1, 0, 0, -1 -> -.4 points, relative -.4 / .6
    arc = sft["retention"]["arc_easy"]
    assert arc["change"]["diff"] == pytest.approx(-.4) and arc["relative_change"] == pytest.approx(-.4 / .6)
    assert arc["gold_ll_change"]["diff"] == pytest.approx(-.8) and sft["gold_ll_change"]["diff"] == pytest.approx(-.8)
    # one model: its own numbers, with the Wilson interval of its accuracy
    full = groups["ssr (full, learning_rate=2e-05)"]
    assert full["task"]["mean"] == 1.0 and full["task"]["ci95"][0] == pytest.approx(0.5101, abs=1e-4)
    assert groups["base"]["kl"]["reference"]

    md = (run / "report.md").read_text()
    pooled = table(md, "Per method and setting, pooled over seeds")
    assert pooled[0].startswith("| method (setting) | models | task accuracy [95% CI] |")
    assert any(r.startswith("| sft (LoRA) | sft-s0, sft-s1 | 0.625 [") for r in pooled)
    retention = table(md, "Retention per method and setting, pooled over seeds")
    assert retention[0] == ("| benchmark | n | Δ sft (LoRA) | Δ ssr (LoRA) | Δ sft (full, learning_rate=2e-05) | "
                            "Δ ssr (full, learning_rate=2e-05) |")
    # the per-model tables name method, setting and seed; the targets are per method
    task = table(md, "Task: held-out split (in domain)")
    assert task[0].startswith("| model | method | setting | seed | n |")
    assert "| sft-s1 | sft | LoRA | 1 | 4 |" in "\n".join(task)
    assert [r.split(" | ")[0] for r in table(md, "Training targets per method")[2:]] == ["| sft", "| ssr"]
    models = {m["name"]: m for m in report["models"]}
    assert (models["sft-full"]["method"], models["sft-full"]["setting"], models["sft-full"]["seed"]) == \
        ("sft", "full, learning_rate=2e-05", 0)
    assert sorted(p.name for p in (run / "figures").iterdir()) == ["gold_ll_change.png", "task_vs_drift.png"]


def test_a_run_of_one_model_per_method_has_no_pooled_tables(tmp_path):
    from tests.synthetic_runs import make_run

    run = make_run(tmp_path)
    write_report(run)
    md = (run / "report.md").read_text()
    assert "pooled over seeds" not in md and "| model | n | accuracy" in md
    assert [g["label"] for g in read_json(run / "report.json")["groups"]] == ["base", "sft", "ssr"]
