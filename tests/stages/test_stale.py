"""A changed setting redoes exactly what depends on it: `ssrtune run` redoes the stale stages downstream of the change
(one line each, saying what changed) and nothing else; a stage command refuses, naming the change and the command
that redoes it; `--fresh` redoes the stages asked for, never the ones they need; sidecars of earlier versions (a
hash alone) are still read."""

import json

import pytest
import yaml

from ssrtune.storage.fingerprints import Digest, changes, file_digest, fingerprint, recorded_parts
from ssrtune.judges.factory import judge_fingerprint
from ssrtune.stages.base import Run
from ssrtune.stages.judge import Judge
from ssrtune.storage.artifacts import StaleArtifactError, recorded_fingerprint
from tests.commands import cli
from tests.tiny_run import QUICK_RUN, SHORT_ANSWERS, stamps

# accepts every own answer; `contains` then accepts only where the gold is a refusal (skip_refusals) or is inside
ACCEPT_ALL = {"kind": "token_f1", "threshold": 0.0}


def with_judge(config, judge):
    tree = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**tree, "judge": judge}))


def test_a_changed_judge_redoes_what_depends_on_it_and_nothing_else(tiny_run, tmp_path, monkeypatch, capsys):
    # the task is scored by a judge of its own, so that the run's judge decides the training targets only
    config = tiny_run.file(**(QUICK_RUN | dict(judge=ACCEPT_ALL,
                          evaluate={"batch_size": 4, "max_new_tokens": 6, "judge": {"kind": "token_f1"}})))
    run = tmp_path / "run"
    assert cli(monkeypatch, capsys, "run", config)[0] == 0
    kept = ["generations.jsonl", "models/sft/adapter_model.safetensors", "eval/base/predictions.jsonl",
            "eval/base/task.judgments.jsonl", "eval/sft/predictions.jsonl"]
    redone = ["judgments.jsonl", "models/ssr/adapter_model.safetensors", "eval/ssr/predictions.jsonl"]
    before = stamps(run, *kept, *redone)

    with_judge(config, {"kind": "contains"})
    status, _, err = cli(monkeypatch, capsys, "judge", config)  # a stage command refuses, saying why and what to run
    assert status == 2 and "Traceback" not in err
    assert "judge.kind changed (token_f1 -> contains); judge.threshold changed (0.0 -> unset)" in err
    assert f"`ssrtune run {config}` redoes it and every stage that depends on it" in err
    assert f"`ssrtune judge {config} --fresh` redoes it alone" in err
    assert stamps(run, *kept, *redone) == before  # refused before any work

    status, _, err = cli(monkeypatch, capsys, "run", config)
    assert status == 0, err
    told = [line for line in err.splitlines() if " redone" in line]
    assert told == ["[judge] redone: judge.kind changed (token_f1 -> contains); judge.threshold changed (0.0 -> unset)",
                    "[train/ssr] redone: train/ssr.jsonl changed",
                    "[evaluate/ssr/task] redone: models/ssr changed",
                    "[evaluate/ssr/task/verdicts] redone: predictions.jsonl changed"], err
    after = stamps(run, *kept, *redone)
    assert {path: after[path] for path in kept} == {path: before[path] for path in kept}
    assert all(after[path] != before[path] for path in redone)
    sidecar = json.loads((run / "judgments.jsonl.meta.json").read_text())
    assert sidecar["parts"]["judge.kind"] == "contains"  # what the next change is compared with

    # a stage command's --fresh redoes the stages asked for: ssr's evaluation, not the base model's it also shows
    before = stamps(run, "eval/base/predictions.jsonl", "eval/ssr/predictions.jsonl", "models/ssr/ssrtune_train.json")
    assert cli(monkeypatch, capsys, "evaluate", config, "--model", "ssr", "--fresh")[0] == 0
    after = stamps(run, *before)
    assert after["eval/base/predictions.jsonl"] == before["eval/base/predictions.jsonl"]
    assert after["models/ssr/ssrtune_train.json"] == before["models/ssr/ssrtune_train.json"]
    assert after["eval/ssr/predictions.jsonl"] != before["eval/ssr/predictions.jsonl"]


def test_a_stage_command_refused_downstream_names_its_own_command(tiny_run, tmp_path, monkeypatch, capsys):
    config = tiny_run.file(**(QUICK_RUN | dict(judge=ACCEPT_ALL, methods=["ssr"])))
    assert cli(monkeypatch, capsys, "train", config)[0] == 0
    with_judge(config, {"kind": "contains"})
    assert cli(monkeypatch, capsys, "judge", config, "--fresh")[0] == 0  # the judge alone; training is now stale
    status, _, err = cli(monkeypatch, capsys, "train", config, "train.seed=0")
    assert status == 2 and "models/ssr is out of date: train/ssr.jsonl changed" in err
    assert f"`ssrtune train {config} train.seed=0 --model ssr --fresh` redoes it alone" in err


def test_sidecars_of_earlier_versions_are_read(tiny_run, tmp_path):
    config = tiny_run.config(*SHORT_ANSWERS, "judge={kind: token_f1}")
    Run(config)(Judge())
    sidecar = config.path / "judgments.jsonl.meta.json"
    recorded = json.loads(sidecar.read_text())
    # an earlier version wrote the hash alone, of these parts in this order: its verdicts are current and reused
    earlier = fingerprint(judge_fingerprint(config.judge), file_digest(config.path / "data" / "train.jsonl"),
                          recorded_fingerprint(config.path / "generations.jsonl"))
    sidecar.write_text(json.dumps({"fingerprint": earlier}))
    before = (config.path / "judgments.jsonl").stat().st_mtime_ns
    Run(config)(Judge())
    assert (config.path / "judgments.jsonl").stat().st_mtime_ns == before
    assert json.loads(sidecar.read_text()) == recorded  # and now say what they were made with
    # made under another hash by an earlier version: what changed is not known, and is said so
    sidecar.write_text(json.dumps({"fingerprint": "0123456789abcdef"}))
    with pytest.raises(StaleArtifactError, match="made by an earlier version of ssrtune.*`--fresh`"):
        Run(config)(Judge())


def test_changes_name_settings_and_inputs_once():
    judge = Digest("j1", {"judge": {"kind": "token_f1", "threshold": 0.5, "template": "x" * 300}})
    made = {"parts": recorded_parts({"judge": judge, "answers.jsonl": Digest("a1"), "max_new_tokens": 6})}
    same_judge = Digest("j2", {"judge": {"kind": "token_f1", "threshold": 0.5, "template": "y" * 300}})
    assert changes(made, {"judge": same_judge, "answers.jsonl": Digest("a2"), "max_new_tokens": 6}) == [
        "judge.template changed", "answers.jsonl changed"]  # the judge's digest is explained by its template
    other = Digest("j3", {"judge": {"kind": "contains", "template": "x" * 300}})
    assert changes(made, {"judge": other, "answers.jsonl": Digest("a1"), "max_new_tokens": 8}) == [
        "judge.kind changed (token_f1 -> contains)", "max_new_tokens changed (6 -> 8)",
        "judge.threshold changed (0.5 -> unset)"]
