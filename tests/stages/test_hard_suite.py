"""The hard in-domain set as a judged suite of the tiny model's evaluation (its records, answers, verdicts and scores;
a changed out-of-domain window re-answers that suite alone), and in the report beside the task and out-of-domain
sets (its task table, report.json, the method comparison, the judge statistics)."""

import json

from ssrtune.report import write_report
from ssrtune.stages.base import Run
from ssrtune.stages.evaluate import Evaluate
from ssrtune.storage.artifacts import read_json, write_json
from tests.synthetic_runs import make_run, table, write_task
from tests.tiny_run import stamps

RECIPE = "data={recipe: grounded-qa, n_train: 4, n_test: 2, document_words: 20}"
HARD = ["data/hard.jsonl", "eval/base/hard.predictions.jsonl", "eval/base/hard.judgments.jsonl"]


def test_the_hard_set_is_a_judged_suite_of_its_own(tiny_run):
    def configure(*overrides):
        return tiny_run.config(RECIPE, "evaluate.batch_size=4", "evaluate.max_new_tokens=4", "evaluate.judge={kind: "
                               "refusal}", "evaluate.hard={n: 4, judge: {kind: contains}}", "evaluate.ood={n: 2}",
                               *overrides)

    config = configure()
    results = Run(config)(Evaluate())
    assert list(results) == ["task", "hard", "ood"]
    run = config.path
    records = [json.loads(line) for line in (run / "data/hard.jsonl").read_text().splitlines()]
    test_ids = {json.loads(line)["id"] for line in (run / "data/test.jsonl").read_text().splitlines()}
    assert len(records) == 4 and sum(not r["meta"]["answerable"] for r in records) == 2
    assert not {r["id"] for r in records} & test_ids
    hard = read_json(run / "eval/base/hard.json")
    assert hard["n"] == 4 and hard["n_unanswerable"] == 2 and hard["judge"] == results["hard"]["judge"]
    assert "contains" in hard["judge"] and "refusal" in results["task"]["judge"]  # its own judge, the task's own
    assert len(hard["examples"]) == 4 and sum(hard["verdicts"].values()) == 4

    # another out-of-domain window: that set is made and answered again, the hard one stays as it was
    before = stamps(run, *HARD, "eval/base/ood.predictions.jsonl")
    Run(configure("evaluate.ood={n: 2, document_words: 30, history_turns: 1}"), redo_stale=True)(Evaluate())
    after = stamps(run, *before)
    assert [path for path in before if after[path] != before[path]] == ["eval/base/ood.predictions.jsonl"]


def with_hard_set(run):
    for model, correct in (("base", [0, 0, 1, 0]), ("sft", [1, 0, 0, 0]), ("ssr", [1, 1, 1, 0])):
        write_task(run / "eval" / model, "hard", correct, grounded=True)
        verdicts = {"accept": sum(correct), "reject": 4 - sum(correct), "failed": 0}
        write_json(run / "eval" / model / "hard.json", {**read_json(run / "eval" / model / "hard.json"),
                                                       "verdicts": verdicts})
    return run


def test_the_report_shows_the_hard_set_beside_the_task(tmp_path):
    run = with_hard_set(make_run(tmp_path))
    write_report(run)
    md = (run / "report.md").read_text()
    lines = table(md, "Task: hard in domain (same-article unanswerables)")
    assert any(line.startswith("| ssr | 4 | 0.750 [0.301, 0.954] |") for line in lines)
    report = read_json(run / "report.json")
    by_name = {m["name"]: m for m in report["models"]}
    assert by_name["ssr"]["hard"]["accuracy"]["mean"] == 0.75 and by_name["base"]["hard"]["grounded"]
    assert all(not m["datasets"] for m in report["models"])  # hard.json is the hard set's, not a user eval set
    comparison = report["comparisons"][0]
    assert (comparison["a"], comparison["b"]) == ("ssr", "sft") and comparison["hard"]["diff"] == 0.5
    assert "task accuracy (hard in domain)" in md and "| ssr: hard | 4 | 3 | 1 | 0 |" in md

    # two runs: each method pooled over its replicates, the hard set in its own column
    other = with_hard_set(make_run(tmp_path, name="other"))
    write_report([run, other], out_dir=tmp_path / "both")
    pooled = table((tmp_path / "both" / "report.md").read_text(), "Per method and setting, pooled over seeds")
    assert "| hard in domain [95% CI] |" in pooled[0]
    groups = {g["label"]: g for g in read_json(tmp_path / "both" / "report.json")["groups"]}
    assert groups["ssr"]["hard"]["mean"] == 0.75 and groups["ssr"]["hard"]["models"] == 2
