"""Synthetic run directories for the report tests: the JSON files a finished run leaves (task, out-of-domain, retention
and KL results, target shares), no model; and the lines of one table of a report.md."""

import yaml

from ssrtune.storage.artifacts import write_json, write_jsonl

GROUNDED = {"n_answerable": 2, "n_unanswerable": 2, "answerable_recall": 0.5, "answerable_accuracy": 0.5,
            "unanswerable_precision": 1.0, "unanswerable_recall": 0.5, "unanswerable_f1": 2 / 3}
TASK = {"base": [1, 0, 0, 0], "sft": [1, 0, 0, 0], "ssr": [1, 1, 0, 1]}
KL = {"sft": [0.03, 0.05, 0.04], "ssr": [0.01, 0.02, 0.03]}
ARC = {"base": ([1, 1, 0, 0, 1], [-1.0, -2.0, -3.0, -4.0, -5.0]),
       "sft": ([1, 0, 0, 0, 0], [-2.0, -3.0, -3.0, -5.0, -6.0]),
       "ssr": ([1, 1, 1, 0, 1], [-1.0, -2.0, -2.5, -4.0, -5.0])}


def benchmark(correct: list[int], gold_ll: list[float], ids=None) -> dict:
    ids = ids or [str(i) for i in range(len(correct))]
    rows = [{"id": i, "acc": bool(c), "acc_norm": bool(c), "gold_ll": g} for i, c, g in zip(ids, correct, gold_ll)]
    value = sum(correct) / len(correct)
    metric = {"value": value, "stderr": 0.1, "ci95": [max(0.0, value - .2), min(1.0, value + .2)]}
    return {"n": len(rows), "split": "validation", "primary": "acc_norm", "acc": metric, "acc_norm": metric,
            "gold_ll": sum(gold_ll) / len(gold_ll), "examples": rows}


def hellaswag(model: str) -> dict:
    """1,000 documents: the base right on 700, sft on 650 (a resolved 5-point drop), ssr on 700 (resolved: none)."""
    right = {"base": 700, "sft": 650, "ssr": 700}[model]
    return benchmark([int(i < right) for i in range(1000)], [-1.0 - (i % 3) for i in range(1000)])


def write_task(folder, suite: str, correct: list[int], grounded: bool, ids=None):
    ids = ids or [f"q{i}" for i in range(len(correct))]
    rows = [{"id": i, "correct": bool(c)} for i, c in zip(ids, correct)]
    result = {"n": len(rows), "accuracy": sum(correct) / len(correct), **(GROUNDED if grounded else {})}
    if suite == "task":
        write_json(folder / "task.json", {**result, "judge": "contains"})
        write_jsonl(folder / "scores.jsonl", rows)
    else:
        write_json(folder / f"{suite}.json", {**result, "examples": rows})


def make_run(root, name="run", grounded=True, task=TASK, kl=KL, arc=ARC, task_ids=None):
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"methods": ["sft", "ssr"]}))
    write_jsonl(run / "judgments.jsonl", [{"id": "a", "verdict": "accept"}, {"id": "b", "verdict": "reject"},
                                          {"id": "c", "verdict": "accept"}])
    for model in ("base", "sft", "ssr"):
        folder = run / "eval" / model
        write_task(folder, "task", task[model], grounded, task_ids)
        write_task(folder, "ood", task[model], grounded, task_ids)
        kl_result = ({"reference": "x", "mean_kl": 0.0, "n_prompts": 3} if model == "base" else
                     {"mean_kl": sum(kl[model]) / 3, "per_prompt": kl[model], "n_prompts": 3, "n_tokens": 30})
        write_json(folder / "retention.json", {"benchmarks": {"arc_easy": benchmark(*arc[model]),
                                                              "hellaswag": hellaswag(model)}, "kl": kl_result})
    for method, share in (("sft", {"gold": 1.0}), ("ssr", {"gold": 0.4, "self": 0.6})):
        write_json(run / "train" / f"{method}.stats.json", {"method": method, "n": 5, "shares": share})
    return run


def table(md: str, title: str) -> list[str]:
    """The lines of one markdown table, from its header on."""
    section = md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]
