"""The command line, end to end on the tiny model and a small data file: the console script as a process of its own
where its whole console is under test, the stage commands and their errors in this process."""

import json
import re

import yaml

from tests.commands import cli, ssrtune
from tests.tiny_run import QUICK_RUN


def held_out(tmp_path, records_file):
    """Test records that are not the training records (the same questions on longer documents)."""
    path = tmp_path / "held_out.jsonl"
    rows = [json.loads(line) for line in records_file.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "context": r["context"] + " That is all."}) + "\n" for r in rows))
    return path


def test_run_produces_every_artifact_and_the_table(tiny_run, tmp_path, monkeypatch, capsys):
    # held-out test records and a judge that accepts every own answer: no warning is due, so none may show
    config = tiny_run.file(**(QUICK_RUN | dict(judge={"kind": "regex", "pattern": ""})))
    tree = yaml.safe_load(config.read_text())
    tree["data"]["test_file"] = str(held_out(tmp_path, tiny_run.records))
    config.write_text(yaml.safe_dump(tree))
    result = ssrtune("run", config)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    for artifact in ["config.yaml", "data/train.jsonl", "data/test.jsonl", "generations.jsonl", "judgments.jsonl",
                     "train/sft.jsonl", "train/ssr.jsonl", "models/sft/adapter_config.json",
                     "models/ssr/adapter_config.json", "eval/base/task.json", "eval/sft/task.json",
                     "eval/ssr/predictions.jsonl", "report.md"]:
        assert (run / artifact).exists(), artifact
    for name in ("base", "sft", "ssr"):
        assert name in result.stdout
    assert "ans. recall" in result.stdout and "self targets" in result.stdout
    rows = [json.loads(line) for line in (run / "train" / "ssr.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["source"] for r in rows} <= {"self", "gold"}
    # a clean console: one line per stage with its time, none of the libraries' warnings, bars or log dicts
    lines = result.stderr.splitlines()
    assert [line.split("]")[0] + "]" for line in lines] == [
        "[data]", "[select/sft]", "[generate]", "[judge]", "[select/ssr]", "[train/sft]", "[train/ssr]",
        *(f"[evaluate/{model}{part}]" for model in ("base", "sft", "ssr")
          for part in ("/task", "/task/verdicts", "/task/scores", "")), "[report]"], result.stderr
    assert all(re.search(r" in \d+(\.\d s| min \d\d s)$", line) for line in lines)
    assert "[generate] 6 own answers in " in result.stderr and "[train/ssr] LoRA, 2 steps, loss " in result.stderr
    for noise in ("Warning", "Loading weights", "it/s", "train_runtime", "{'"):
        assert noise not in result.stdout + result.stderr
    timings = json.loads((run / "timings.json").read_text())
    assert set(timings) == {line[1:].split("]")[0] for line in lines}
    assert all(t["sessions"] == 1 and t["interrupted"] == 0 and t["seconds"] >= 0 for t in timings.values())
    # a second run reuses every stage
    again = cli(monkeypatch, capsys, "run", config)
    assert again.returncode == 0 and (run / "generations.jsonl").read_text().count("\n") == 6
    # --verbose shows what the libraries say
    verbose = ssrtune("--verbose", "generate", config, "--fresh")
    assert verbose.returncode == 0 and "Loading weights" in verbose.stderr and "INFO stage generate" in verbose.stderr


def test_stage_commands_and_overrides(tiny_run, monkeypatch, capsys):
    config = tiny_run.file(**QUICK_RUN)
    assert cli(monkeypatch, capsys, "data", config).stdout.startswith("6 train, 6 test")
    assert "6 generations" in cli(monkeypatch, capsys, "generate", config).stdout
    judged = cli(monkeypatch, capsys, "judge", config).stdout
    assert re.fullmatch(r"6 own answers judged: \d accept, \d reject, 0 failed\n", judged)
    out = cli(monkeypatch, capsys, "select", config, "methods=[ssr]").stdout
    assert out.startswith("ssr: 6 examples") and "self targets" in out
    changed = cli(monkeypatch, capsys, "generate", config, "generate.max_new_tokens=3")
    assert changed.returncode == 2 and "--fresh" in changed.stderr and "Traceback" not in changed.stderr
    assert cli(monkeypatch, capsys, "generate", config, "generate.max_new_tokens=3", "--fresh").returncode == 0


def test_bad_config_and_bad_data_are_one_clear_line(tiny_run, tmp_path, monkeypatch, capsys):
    config = tiny_run.file(**QUICK_RUN)
    bad = cli(monkeypatch, capsys, "run", config, "train.epocs=2")
    assert bad.returncode == 2 and "train.epocs" in bad.stderr and "Traceback" not in bad.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text(tiny_run.records.read_text() + '{"id": "z", "query": "q"}\n')
    bad = cli(monkeypatch, capsys, "data", config, f"data.train_file={broken}")
    assert bad.returncode == 2 and "line 7, field 'response'" in bad.stderr


def test_num_processes_option_reaches_the_training_config(tiny_run, monkeypatch, capsys):
    result = cli(monkeypatch, capsys, "train", tiny_run.file(**QUICK_RUN), "--num-processes", 2)
    assert result.returncode == 2 and "batch_size 3 does not split evenly across num_processes 2" in result.stderr
