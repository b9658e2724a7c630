"""The evaluation suites end to end on the tiny model: retention, out of domain, a judged user set, the report."""

import json

from tests.commands import cli
from tests.tiny_run import QUICK_RUN, record_dicts

RETENTION = {"benchmarks": ["arc_easy", "winogrande", "gsm8k"], "limit": 4, "batch_size": 4, "gsm8k_shots": 1,
             "gsm8k_max_new_tokens": 4, "kl_prompts": 2, "kl_max_new_tokens": 4, "kl_top_k": 8}


def test_evaluate_every_suite_and_report(tiny_run, tmp_path, monkeypatch, capsys):
    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps(r) + "\n" for r in record_dicts()[:3]))
    config = tiny_run.file(**(QUICK_RUN | dict(methods=["ssr"], evaluate={
        "batch_size": 4, "max_new_tokens": 4, "retention": RETENTION, "ood": {"n": 4},
        "datasets": [{"name": "extra", "file": str(extra), "judge": {"kind": "contains"}}]})))
    result = cli(monkeypatch, capsys, "run", config)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    for name in ("base", "ssr"):
        retention = json.loads((run / "eval" / name / "retention.json").read_text())
        assert set(retention["benchmarks"]) == {"arc_easy", "winogrande", "gsm8k"}
        arc = retention["benchmarks"]["arc_easy"]
        assert arc["n"] == 4 and len(arc["examples"]) == 4 and len(arc["examples"][0]["lls"]) >= 3
        ood = json.loads((run / "eval" / name / "ood.json").read_text())
        assert ood["n"] == 4 and {"prediction", "recall" if ood["examples"][0]["answerable"] else "refused"} <= set(
            ood["examples"][0])
        extra_result = json.loads((run / "eval" / name / "extra.json").read_text())
        assert extra_result["n"] == 3 and sum(extra_result["verdicts"].values()) == 3
    ids = [[r["id"] for r in json.loads((run / "eval" / n / "retention.json").read_text())["benchmarks"]["winogrande"]
            ["examples"]] for n in ("base", "ssr")]
    assert ids[0] == ids[1]  # the same documents for every model
    kl = json.loads((run / "eval" / "ssr" / "retention.json").read_text())["kl"]
    assert json.loads((run / "eval" / "base" / "retention.json").read_text())["kl"]["mean_kl"] == 0.0
    # the trained adapter moved the model: a positive KL, the token-weighted mean of the per-prompt ones
    assert kl["n_prompts"] == len(kl["per_prompt"]) == 2 and kl["mean_kl"] > 0
    assert min(kl["per_prompt"]) <= kl["mean_kl"] <= max(kl["per_prompt"])
    report = (run / "report.md").read_text()
    for title in ("Task: held-out split", "Task: out of domain", "Retention of general ability",
                  "Paired comparison against the base model", "Training targets per method", "Judge statistics"):
        assert title in report
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "Δ ssr" in html
    # a second evaluation reuses every suite: nothing is loaded or generated again
    again = cli(monkeypatch, capsys, "evaluate", config)
    assert again.returncode == 0, again.stderr
    assert "evaluate ssr" not in again.stdout and "arc_easy acc_norm" in again.stdout
