"""The results ledger (issue 24) on the tiny model: `ssrtune reproduce` with a budget stops cleanly between models and
continues where it stopped; a brand-new run directory restored from the ledger finds nothing to do (no training, no
model loaded); a damaged ledger file is named and nothing of it read; an entry of another results version is made
again; a restored model without weights whose evaluation has work left is trained again; the first base model of
another CPU kind records how many answers differ; and no ledger file holds the datasets' text."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from ssrtune.ledger import entries
from ssrtune.ledger.entries import RESULTS_VERSION, cpu_kind, sha256
from ssrtune.storage.artifacts import iter_jsonl
from tests.commands import cli
from tests.tiny_run import QUICK_RUN

RETENTION = {"benchmarks": ["arc_easy"], "limit": 2, "batch_size": 4, "kl_prompts": 2, "kl_max_new_tokens": 4,
             "kl_top_k": 8}
MODELS = [{"name": "sft-s0", "method": "sft"}, {"name": "ssr-s0", "method": "ssr"}]


@pytest.fixture()
def experiment(tiny_run, tmp_path, monkeypatch, capsys):
    """`reproduce(run_dir, *args)`: `ssrtune reproduce` of a two-model tiny experiment into tmp_path/ledger; and the
    trainings it started, by model name."""
    config = tiny_run.file(**(QUICK_RUN | dict(judge={"kind": "token_f1", "threshold": 0.5}, models=MODELS,
                                               evaluate={"batch_size": 4, "max_new_tokens": 6, "ood": {"n": 3},
                                                         "retention": RETENTION})))
    trained: list[str] = []
    from ssrtune.stages import train

    real = train.train_method
    monkeypatch.setattr(train, "train_method", lambda own, rows, out: trained.append(out.name) or real(own, rows, out))

    def reproduce(run_dir, *args):
        return cli(monkeypatch, capsys, "reproduce", config, "--ledger", tmp_path / "ledger", "--run-dir",
                   tmp_path / run_dir, *args)

    return reproduce, trained


def no_models(monkeypatch):
    """From here on, building a model or training one fails the test."""
    from ssrtune.stages import evaluated, generate, train

    def refused(*args, **kwargs):
        raise AssertionError("a model was loaded or trained")

    for module, name in ((evaluated, "stage_lm"), (generate, "stage_lm"), (train, "train_method")):
        monkeypatch.setattr(module, name, refused)


def test_the_ledger_continues_under_a_budget_and_a_new_run_directory_reuses_it(experiment, tmp_path, monkeypatch):
    reproduce, trained = experiment
    ledger, kind = tmp_path / "ledger", cpu_kind()
    first = reproduce("runs", "--budget", "0")  # the first model runs (no wall time known yet), then it stops
    assert first.returncode == 0, first.stderr
    assert trained == ["sft-s0"] and "1 of 3 rows left" in first.stdout
    assert (ledger / kind / "models/sft-s0/entry.json").exists() and not (ledger / kind / "models/ssr-s0").exists()

    second = reproduce("runs")
    assert second.returncode == 0, second.stderr
    assert trained == ["sft-s0", "ssr-s0"] and "sft-s0: current in the ledger, reused" in second.stdout
    assert "complete" in second.stdout
    entry = json.loads((ledger / kind / "models/ssr-s0/entry.json").read_text())
    assert entry["results_version"] == RESULTS_VERSION and entry["dtype"] == "float32" and entry["wall_seconds"] > 0
    assert entry["commit"] and entry["cpu"]["kind"] == kind
    kept = set(entry["files"])
    assert {"models/ssr-s0/ssrtune_train.json", "train/ssr.stats.json", "eval/ssr-s0/predictions.jsonl",
            "eval/ssr-s0/retention/kl.json"} <= kept and not any("safetensors" in name for name in kept)
    assert "eval/base/kl_reference.safetensors" in json.loads((ledger / kind / "base/entry.json").read_text())["files"]

    # no dataset text: not a question or document of the task data or of the out-of-domain set
    texts = [t for path in (tmp_path / "runs" / kind / "data").glob("*.jsonl") for r in iter_jsonl(path)
             for t in (r["messages"][-1]["content"], r["context"]) if t]
    assert texts and len(list((tmp_path / "runs" / kind / "data").glob("*.jsonl"))) == 3
    for path in ledger.rglob("*"):
        if path.is_file() and path.suffix != ".safetensors":
            content = path.read_text(encoding="utf-8")
            assert not [t for t in texts if t in content], path

    # a brand-new run directory (a fresh clone) restores the ledger and finds nothing to do
    no_models(monkeypatch)
    start = time.monotonic()
    fresh = reproduce("clone")
    assert fresh.returncode == 0, fresh.stderr
    assert time.monotonic() - start < 60 and fresh.stdout.count("current in the ledger, reused") == 3
    for name in ("eval/ssr-s0/predictions.jsonl", "eval/base/task.json", "report.md"):
        assert (tmp_path / "clone" / kind / name).exists(), name
    assert (tmp_path / "clone" / kind / "eval/ssr-s0/task.json").read_text() == (
        tmp_path / "runs" / kind / "eval/ssr-s0/task.json").read_text()


def test_a_damaged_ledger_file_is_named_and_nothing_is_read(experiment, tmp_path):
    reproduce, _ = experiment
    assert reproduce("runs").returncode == 0
    damaged = tmp_path / "ledger" / cpu_kind() / "models/ssr-s0/eval/ssr-s0/predictions.jsonl"
    damaged.write_text(damaged.read_text().replace('"response": "', '"response": "x', 1))
    result = reproduce("clone")
    assert result.returncode == 2 and f"{damaged}: its content is not what its entry recorded" in result.stderr
    assert not (tmp_path / "clone" / cpu_kind() / "eval").exists()  # every entry is checked before one is restored

    damaged.unlink()
    result = reproduce("clone")
    assert result.returncode == 2 and f"{damaged}: listed in its entry's entry.json but missing" in result.stderr


def test_entries_of_another_results_version_and_models_without_weights_are_made_again(experiment, tmp_path,
                                                                                        monkeypatch):
    reproduce, trained = experiment
    assert reproduce("runs").returncode == 0
    ledger, kind = tmp_path / "ledger", cpu_kind()
    before = json.loads((ledger / kind / "models/sft-s0/entry.json").read_text())

    monkeypatch.setattr(entries, "RESULTS_VERSION", RESULTS_VERSION + 1)  # the code now gives other results ...
    for name in ("shared", f"{kind}/base", f"{kind}/models/ssr-s0"):  # ... but these were made by it already
        path = ledger / name / "entry.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "results_version": RESULTS_VERSION + 1}))
    trained.clear()
    assert reproduce("runs").returncode == 0
    assert trained == ["sft-s0"]
    after = json.loads((ledger / kind / "models/sft-s0/entry.json").read_text())
    assert after["results_version"] == RESULTS_VERSION + 1 and after["finished"] >= before["finished"]

    # a weightless run directory whose evaluation settings changed: each model is trained again, not a crash
    trained.clear()
    changed = reproduce("clone", "evaluate.max_new_tokens=5")
    assert changed.returncode == 0, changed.stderr
    assert sorted(trained) == ["sft-s0", "ssr-s0"]


def test_the_first_base_of_another_cpu_kind_records_the_answers_that_differ(experiment, tmp_path):
    reproduce, _ = experiment
    assert reproduce("runs").returncode == 0
    ledger, kind = tmp_path / "ledger", cpu_kind()
    other = ledger / "other-kind" / "base"
    shutil.copytree(ledger / kind / "base", other)
    answers = other / "eval/base/predictions.jsonl"
    rows = list(iter_jsonl(answers))
    answers.write_text("".join(json.dumps({**r, "response": r["response"] + "!" if i == 0 else r["response"]}) + "\n"
                               for i, r in enumerate(rows)))
    record = json.loads((other / "entry.json").read_text())
    record["files"]["eval/base/predictions.jsonl"] = sha256(answers)
    (other / "entry.json").write_text(json.dumps(record))
    shutil.rmtree(ledger / kind / "base")  # this kind's base entry made again: compared with the other kind's

    assert reproduce("runs").returncode == 0
    differ = json.loads((ledger / kind / "base/entry.json").read_text())["answers_differ"]
    assert differ["other-kind"]["eval/base/predictions.jsonl"] == 1
    assert differ["other-kind"]["eval/base/ood.predictions.jsonl"] == 0
