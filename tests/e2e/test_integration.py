"""The whole chain on the real embedded model (SmolLM2-135M-Instruct) and the grounded-qa recipe, a few examples."""

import os
from pathlib import Path

import pytest

from ssrtune.config.run import load_config
from ssrtune.data.loaders import load_records
from ssrtune.pipeline import run
from ssrtune.storage.artifacts import iter_jsonl, read_json
from tests.grounded_scoring import grounded_qa_correct
from tests.paths import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture()
def user_cache(monkeypatch):
    # Share the converted model with `make demo` so the conversion happens once per machine.
    monkeypatch.setenv("SSRTUNE_CACHE", os.environ.get("SSRTUNE_TEST_CACHE",
                                                        str(Path.home() / ".cache" / "ssrtune")))


def test_quickstart_chain_on_the_embedded_model(tmp_path, user_cache):
    config = load_config(ROOT / "configs" / "quickstart.yaml", [
        f"run_dir={tmp_path / 'run'}", "data.n_train=8", "data.n_test=6", "generate.max_new_tokens=24",
        "evaluate.max_new_tokens=24", "train.batch_size=4", "train.max_length=384",
        "evaluate.retention.limit=4", "evaluate.retention.kl_prompts=2",
        "evaluate.retention.kl_max_new_tokens=8",
    ])
    report = run(config)
    run_dir = tmp_path / "run"
    assert report.exists() and "| ssr |" in report.read_text()
    generations = list(iter_jsonl(run_dir / "generations.jsonl"))
    assert len(generations) == 8 and all(g["response"] for g in generations)
    test_records = {r.id: r for r in load_records(run_dir / "data" / "test.jsonl")}
    for name in ("base", "sft", "ssr"):
        metrics = read_json(run_dir / "eval" / name / "task.json")
        scores = list(iter_jsonl(run_dir / "eval" / name / "scores.jsonl"))
        predictions = {p["id"]: p["response"] for p in iter_jsonl(run_dir / "eval" / name / "predictions.jsonl")}
        # every score is the one its prediction earns under the grounded-QA rule, and the accuracy is their mean
        assert [r["correct"] for r in scores] == [grounded_qa_correct(test_records[r["id"]], predictions[r["id"]])
                                                  for r in scores]
        assert metrics["judge"] == "all(refusal, contains)" and "unanswerable_f1" in metrics
        assert metrics["n"] == len(scores) == 6
        assert metrics["accuracy"] == pytest.approx(sum(r["correct"] for r in scores) / 6)
    retention = read_json(run_dir / "eval" / "ssr" / "retention.json")
    assert all(b["n"] == 4 for b in retention["benchmarks"].values())
    kl = retention["kl"]
    assert kl["mean_kl"] > 0 and min(kl["per_prompt"]) <= kl["mean_kl"] <= max(kl["per_prompt"])
    assert "Retention of general ability" in report.read_text() and (run_dir / "report.html").exists()
    stats = read_json(run_dir / "train" / "ssr.stats.json")
    assert sum(stats["shares"].values()) == pytest.approx(1.0)
    assert read_json(run_dir / "models" / "ssr" / "ssrtune_train.json")["steps"] == 2
