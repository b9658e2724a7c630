"""The results ledger (issue 24) on the tiny model: `ssrtune reproduce` with a budget stops cleanly between models and
continues where it stopped; a brand-new run directory restored from the ledger finds nothing to do (no training, no
model loaded); a damaged ledger file is named and nothing of it read; an entry of another results version is made
again; a restored model without weights whose evaluation has work left is trained again; the first base model of
another CPU kind records how many answers differ; and no ledger file holds the datasets' text."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import pytest

from ssrtune.ledger import entries
from ssrtune.ledger.entries import RESULTS_VERSION, cpu_kind
from ssrtune.storage.fingerprints import file_sha256
from ssrtune.storage.artifacts import iter_jsonl
from tests.commands import cli
from tests.tiny_run import QUICK_RUN, TinyRun, write_records

RETENTION = {"benchmarks": ["arc_easy"], "limit": 2, "batch_size": 4, "kl_prompts": 2, "kl_max_new_tokens": 4,
             "kl_top_k": 8}
MODELS = [{"name": "sft-s0", "method": "sft"}, {"name": "ssr-s0", "method": "ssr"}]


@dataclasses.dataclass
class Experiment:
    """The tiny experiment's configuration file, and its two sessions' messages and trainings (by model name)."""

    folder: Path
    config: Path
    said: list[list[str]] = dataclasses.field(default_factory=lambda: [[], []])
    trained: list[list[str]] = dataclasses.field(default_factory=lambda: [[], []])


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model) -> Experiment:
    """A two-model tiny experiment recorded in `folder`/ledger by two sessions of `reproduce` in `folder`/runs: the
    first under a budget of 0 minutes (the first model runs, as no wall time is known yet), the second to the end."""
    from ssrtune.config.run import load_config
    from ssrtune.ledger.driver import reproduce
    from ssrtune.stages import train

    folder = tmp_path_factory.mktemp("ledger")
    tiny = TinyRun(folder, tiny_model, write_records(folder / "records.jsonl"))
    done = Experiment(folder, tiny.file(**(QUICK_RUN | dict(
        judge={"kind": "token_f1", "threshold": 0.5}, models=MODELS,
        evaluate={"batch_size": 4, "max_new_tokens": 6, "ood": {"n": 3}, "retention": RETENTION}))))
    config = load_config(done.config, [f"run_dir={folder / 'runs' / cpu_kind()}"])
    real = train.train_method
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSRTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        for session, budget in enumerate((0, None)):
            patch.setattr(train, "train_method", lambda own, rows, out, got=done.trained[session]:
                          got.append(out.name) or real(own, rows, out))
            assert reproduce(config, folder / "ledger", budget, done.said[session].append) == 0 or session == 0
    return done


@pytest.fixture()
def experiment(finished, tmp_path, monkeypatch, capsys):
    """`reproduce(run_dir, *args)`: `ssrtune reproduce` of the finished experiment, on a copy of its ledger in
    tmp_path/ledger (and of its run directory, in tmp_path/runs), into tmp_path/`run_dir`; and the trainings it
    started, by model name."""
    shutil.copytree(finished.folder / "ledger", tmp_path / "ledger")
    shutil.copytree(finished.folder / "runs", tmp_path / "runs")
    trained: list[str] = []
    from ssrtune.stages import train

    real = train.train_method
    monkeypatch.setattr(train, "train_method", lambda own, rows, out: trained.append(out.name) or real(own, rows, out))

    def reproduce(run_dir, *args):
        return cli(monkeypatch, capsys, "reproduce", finished.config, "--ledger", tmp_path / "ledger", "--run-dir",
                   tmp_path / run_dir, *args)

    return reproduce, trained


def no_models(monkeypatch):
    """From here on, building a model or training one fails the test."""
    from ssrtune.stages import evaluated, generate, train

    def refused(*args, **kwargs):
        raise AssertionError("a model was loaded or trained")

    for module, name in ((evaluated, "stage_lm"), (generate, "stage_lm"), (train, "train_method")):
        monkeypatch.setattr(module, name, refused)


def test_the_ledger_continues_under_a_budget_and_a_new_run_directory_reuses_it(finished, experiment, tmp_path,
                                                                                monkeypatch):
    ledger, kind = finished.folder / "ledger", cpu_kind()
    assert finished.trained == [["sft-s0"], ["ssr-s0"]]
    assert finished.said[0][-1].startswith("[reproduce] stopped within the budget of 0 min")
    assert finished.said[0][-1].endswith("1 rows left; `make reproduce` continues")
    assert "[reproduce] sft-s0: current in the ledger, reused" in finished.said[1]
    entry = json.loads((ledger / kind / "models/ssr-s0/entry.json").read_text())
    assert entry["results_version"] == RESULTS_VERSION and entry["dtype"] == "float32" and entry["wall_seconds"] > 0
    assert entry["commit"] and entry["cpu"]["kind"] == kind
    # each of its stages' time, from the run directory's timings.json: the training's and the evaluation's
    assert entry["stage_seconds"]["train/ssr-s0"] > 0 and entry["stage_seconds"]["evaluate/ssr-s0/task"] >= 0
    assert set(entry["stage_seconds"]) <= {"train/ssr-s0"} | {k for k in entry["stage_seconds"]
                                                             if k.startswith("evaluate/ssr-s0")}
    kept = set(entry["files"])
    assert {"models/ssr-s0/ssrtune_train.json", "train/ssr.stats.json", "eval/ssr-s0/predictions.jsonl",
            "eval/ssr-s0/retention/kl.json"} <= kept and not any("safetensors" in name for name in kept)
    assert "eval/base/kl_reference.safetensors" in json.loads((ledger / kind / "base/entry.json").read_text())["files"]

    # no dataset text: not a question or document of the task data or of the out-of-domain set
    data = list((finished.folder / "runs" / kind / "data").glob("*.jsonl"))
    texts = [t for path in data for r in iter_jsonl(path) for t in (r["messages"][-1]["content"], r["context"]) if t]
    assert len(data) == 3 and len(texts) == 2 * (6 + 6 + 3)
    for path in ledger.rglob("*"):
        if path.is_file() and path.suffix != ".safetensors":
            content = path.read_text(encoding="utf-8")
            assert not [t for t in texts if t in content], path

    # a brand-new run directory (a fresh clone) restores the ledger and finds nothing to do
    reproduce, _ = experiment
    no_models(monkeypatch)
    start = time.monotonic()
    fresh = reproduce("clone")
    assert fresh.returncode == 0, fresh.stderr
    assert time.monotonic() - start < 60 and fresh.stdout.count("current in the ledger, reused") == 3
    assert f"every row is in the ledger; report: {tmp_path / 'clone' / kind / 'report.md'}" in fresh.stdout
    for name in ("eval/ssr-s0/task.json", "eval/base/ood.json", "eval/sft-s0/retention.json"):
        assert (tmp_path / "clone" / kind / name).read_text() == (finished.folder / "runs" / kind / name).read_text()


def test_a_damaged_ledger_file_is_named_and_nothing_is_read(experiment, tmp_path):
    reproduce, _ = experiment
    damaged = tmp_path / "ledger" / cpu_kind() / "models/ssr-s0/eval/ssr-s0/predictions.jsonl"
    damaged.write_text(damaged.read_text().replace('"response": "', '"response": "x', 1))
    result = reproduce("clone")
    assert result.returncode == 2 and f"{damaged}: its content is not what its entry recorded" in result.stderr
    assert not (tmp_path / "clone" / cpu_kind() / "eval").exists()  # every entry is checked before one is restored

    damaged.unlink()
    result = reproduce("clone")
    assert result.returncode == 2 and f"{damaged}: listed in its entry's entry.json but missing" in result.stderr

    entry = damaged.parents[2] / "entry.json"
    record = json.loads(entry.read_text())
    entry.write_text(json.dumps({**record, "files": {"../../escaped.json": "0" * 64}}))
    result = reproduce("clone")
    assert result.returncode == 2 and "'../../escaped.json' is not a path inside a run directory" in result.stderr
    entry.write_text("{")
    result = reproduce("clone")
    assert result.returncode == 2 and f"{entry}: not a ledger entry" in result.stderr


def test_entries_of_another_results_version_and_models_without_weights_are_made_again(experiment, tmp_path,
                                                                                        monkeypatch):
    reproduce, trained = experiment
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


def test_another_cpu_kind_has_its_base_compared_and_keeps_each_seed_on_one_kind(experiment, tmp_path, monkeypatch):
    reproduce, trained = experiment
    ledger, kind = tmp_path / "ledger", cpu_kind()
    other = ledger / "other-kind" / "base"
    shutil.copytree(ledger / kind / "base", other)
    answers = other / "eval/base/predictions.jsonl"
    rows = list(iter_jsonl(answers))
    answers.write_text("".join(json.dumps({**r, "response": r["response"] + "!" if i == 0 else r["response"]}) + "\n"
                               for i, r in enumerate(rows)))
    record = json.loads((other / "entry.json").read_text())
    record["files"]["eval/base/predictions.jsonl"] = file_sha256(answers)
    (other / "entry.json").write_text(json.dumps(record))
    shutil.rmtree(ledger / kind / "base")  # this kind's base entry made again: compared with the other kind's

    assert reproduce("runs").returncode == 0
    differ = json.loads((ledger / kind / "base/entry.json").read_text())["answers_differ"]
    assert differ["other-kind"]["eval/base/predictions.jsonl"] == 1
    assert differ["other-kind"]["eval/base/ood.predictions.jsonl"] == 0

    # ssr-s0 recorded on the other kind only: sft-s0, of the same seed, is left to a machine of that kind
    shutil.move(ledger / kind / "models/ssr-s0", ledger / "other-kind/models/ssr-s0")
    shutil.rmtree(ledger / kind / "models/sft-s0")
    no_models(monkeypatch)
    waits = reproduce("clone")
    assert waits.returncode == 0, waits.stderr
    assert "sft-s0: left to a machine of another CPU kind (other-kind)" in waits.stdout
    assert "base: current in the ledger, reused" in waits.stdout and "every row" not in waits.stdout
    assert not (tmp_path / "clone" / kind / "eval/ssr-s0").exists()


def test_restored_results_are_scored_without_a_model_and_the_data_is_checked(finished, tmp_path, monkeypatch):
    from ssrtune.config.run import load_config
    from ssrtune.ledger.entries import LedgerError
    from ssrtune.ledger.restore import restore_results

    kind, ledger = cpu_kind(), tmp_path / "ledger"
    shutil.copytree(finished.folder / "ledger", ledger)
    no_models(monkeypatch)
    config = load_config(finished.config, [f"run_dir={tmp_path / 'restored'}"])
    assert restore_results(ledger, config, kind) == ["base", "sft-s0", "ssr-s0"]
    for name in ("eval/ssr-s0/task.json", "eval/ssr-s0/scores.jsonl", "eval/base/retention.json"):
        assert (tmp_path / "restored" / name).read_text() == (finished.folder / "runs" / kind / name).read_text()
    assert not list((tmp_path / "restored" / "models").rglob("*.safetensors"))

    with pytest.raises(LedgerError, match=r"base: not current for this configuration \(.*predictions.jsonl is out of"):
        restore_results(ledger, load_config(finished.config, [f"run_dir={tmp_path / 'stale'}",
                                                              "evaluate.max_new_tokens=5"]), kind)

    manifest = json.loads((ledger / "data.json").read_text())
    test_records = manifest["records"]["data/test.jsonl"]
    test_records[next(iter(test_records))] = "0" * 64  # the data made here is not what the results were made from
    (ledger / "data.json").write_text(json.dumps(manifest))
    with pytest.raises(LedgerError, match=r"other/data/test.jsonl: 1 records differ from the ledger's manifest"):
        restore_results(ledger, load_config(finished.config, [f"run_dir={tmp_path / 'other'}"]), kind)


def test_results_are_written_from_the_ledger_by_one_command(finished, tmp_path, monkeypatch, capsys):
    ledger, design = tmp_path / "ledger", tmp_path / "design.md"
    shutil.copytree(finished.folder / "ledger", ledger)
    design.write_text("## The design\n")
    no_models(monkeypatch)
    done = cli(monkeypatch, capsys, "results", tmp_path / "restored", "--ledger", ledger, "--config", finished.config,
               "--design", design, "--margin", "-0.05", "--out", tmp_path / "RESULTS.md")
    assert done.returncode == 0, done.stderr
    assert "restored from" in done.stdout and "base, sft-s0, ssr-s0" in done.stdout
    document = (tmp_path / "RESULTS.md").read_text()
    entry = json.loads((ledger / cpu_kind() / "models/ssr-s0/entry.json").read_text())
    # the models table names what made each row: its CPU kind and commit, from the entries
    row = next(line for line in document.splitlines() if line.startswith("| ssr-s0 "))
    assert cpu_kind() in row and entry["commit"][:10] in row and "done" in row


def test_verdicts_redone_without_a_model_are_recorded(experiment, tmp_path, monkeypatch):
    reproduce, _ = experiment
    ledger, kind = tmp_path / "ledger", cpu_kind()
    before = json.loads((ledger / kind / "models/ssr-s0/entry.json").read_text())
    no_models(monkeypatch)
    rejudged = reproduce("runs", "evaluate.judge={kind: contains}")  # the evaluation's judge only: no model runs
    assert rejudged.returncode == 0, rejudged.stderr
    after = json.loads((ledger / kind / "models/ssr-s0/entry.json").read_text())
    verdicts = "eval/ssr-s0/task.judgments.jsonl"
    assert after["files"][verdicts] != before["files"][verdicts] and after["wall_seconds"] >= before["wall_seconds"]
    again = reproduce("runs", "evaluate.judge={kind: contains}")
    assert again.returncode == 0 and again.stdout.count("current in the ledger, reused") == 3


def test_a_ledger_needs_a_fixed_precision(experiment):
    reproduce, trained = experiment
    refused = reproduce("clone", "model.dtype=auto")
    assert refused.returncode == 2 and "model.dtype is auto: a ledger's rows from different machines" in refused.stderr
    assert not trained


def test_an_entry_interrupted_while_written_leaves_the_previous_one(finished, tmp_path, monkeypatch):
    from ssrtune.ledger.entries import read_entry, write_entry

    root, folder = finished.folder / "runs" / cpu_kind(), tmp_path / "models" / "ssr-s0"
    names = ["models/ssr-s0/ssrtune_train.json", "eval/ssr-s0/predictions.jsonl"]
    first = write_entry(folder, root, names[:1], wall_seconds=1.0)
    real, copied = shutil.copyfile, []

    def dies_on_the_second(source, target):
        if copied:
            raise KeyboardInterrupt  # a kill in the middle of the copy
        copied.append(real(source, target))

    monkeypatch.setattr(entries.shutil, "copyfile", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        write_entry(folder, root, names, wall_seconds=2.0)
    monkeypatch.setattr(entries.shutil, "copyfile", real)
    assert read_entry(folder).record == first.record and [p.name for p in folder.parent.iterdir()] != ["ssr-s0"]
    write_entry(folder, root, names, wall_seconds=2.0)  # the next write clears what the killed one left
    assert [p.name for p in folder.parent.iterdir()] == ["ssr-s0"] and set(read_entry(folder).files) == set(names)


def test_a_later_method_joins_as_a_new_row_without_redoing_the_old_ones(experiment, tmp_path):
    reproduce, trained = experiment
    models = json.dumps([*MODELS, {"name": "self_only-s0", "method": "self_only"}])
    joined = reproduce("runs", f"models={models}")
    assert joined.returncode == 0, joined.stderr
    assert trained == ["self_only-s0"] and joined.stdout.count("current in the ledger, reused") == 3
    assert (tmp_path / "ledger" / cpu_kind() / "models/self_only-s0/entry.json").exists()


def test_an_entry_records_the_commit_its_process_started_from(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "code.py").write_text("a = 1\n")
    git("add", "code.py")
    git("commit", "-qm", "first")
    started = git("rev-parse", "HEAD")
    monkeypatch.setattr(entries, "REPO", tmp_path)
    entries.commit.cache_clear()
    try:
        assert entries.commit() == {"commit": started, "dirty": False}
        (tmp_path / "code.py").write_text("a = 2\n")  # code committed while a long run goes on
        git("commit", "-qam", "second")
        assert entries.commit()["commit"] == started  # the code the run imported, not the checkout's new head
    finally:
        entries.commit.cache_clear()
