"""A user's own data, first-class: paths relative to the config file, ids made from the content when absent, the
common dataset shapes by name, and the shipped own-data example run end to end."""

import json

import pytest

from ssrtune.config.run import load_config
from ssrtune.data.loaders import load_records
from ssrtune.data.schema import DataError
from tests.paths import ROOT


def test_data_paths_in_a_config_file_are_relative_to_its_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.jsonl").write_text(json.dumps({"id": "1", "query": "q?", "response": "a"}) + "\n")
    config_file = project / "task.yaml"
    config_file.write_text("data:\n  recipe: null\n  train_file: data/train.jsonl\n  test_file: data/train.jsonl\n"
                           "evaluate:\n  datasets: [{name: mine, file: data/mine.jsonl}, {name: hub, file: hf://o/n}]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(config_file)
    assert config.data.train_file == str(project / "data" / "train.jsonl")
    assert [d.file for d in config.evaluate.datasets] == [str(project / "data" / "mine.jsonl"), "hf://o/n"]
    assert len(load_records(config.data.train_file)) == 1
    # a path typed on the command line is the shell's: relative to the current directory, and the error shows it
    config = load_config(config_file, ["data.test_file=test.jsonl"])
    assert config.data.test_file == "test.jsonl"
    with pytest.raises(DataError, match=rf"test.jsonl: no such file or folder \(looked for {elsewhere}/test.jsonl\)"):
        load_records(config.data.test_file)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_ids_are_made_from_the_content_when_absent(tmp_path, caplog):
    rows = [{"question": "Capital of France?", "answer": "Paris", "topic": "geo"},
            {"question": "2 + 2?", "answer": "4", "topic": "math"},
            {"question": "Capital of France?", "answer": "Paris", "topic": "geo"},  # the first row again
            {"question": "Capital of France?", "answer": "Paris", "topic": "other"}]  # and again: meta is not content
    fields = {"query": "question", "response": "answer"}
    with caplog.at_level("WARNING"):
        records = load_records(_jsonl(tmp_path / "a.jsonl", rows), fields)
    ids = [r.id for r in records]
    assert ids[2:] == [f"{ids[0]}-2", f"{ids[0]}-3"] and len(set(ids)) == 4 and len(ids[0]) == 16
    assert "2 records without an id repeat an earlier record's content exactly" in caplog.text
    # stable: the same content gets the same id wherever it stands, whatever its other columns
    moved = load_records(_jsonl(tmp_path / "b.jsonl", [{**rows[1], "topic": "x"}, rows[0]]), fields)
    assert [r.id for r in moved] == [ids[1], ids[0]]
    assert records[0].meta == {"topic": "geo"}
    # a given id is kept, and a duplicate given id is still an error
    assert load_records(_jsonl(tmp_path / "c.jsonl", [{**rows[0], "id": "mine"}]), fields)[0].id == "mine"
    with pytest.raises(DataError, match="line 2, field 'id': duplicate id 'x'"):
        load_records(_jsonl(tmp_path / "d.jsonl", [{**rows[0], "id": "x"}, {**rows[1], "id": "x"}]), fields)


def test_the_common_dataset_shapes_are_read_by_name(tmp_path):
    alpaca = [{"instruction": "Translate to French.", "input": "cat", "output": "chat", "system": "Be brief."},
              {"instruction": "Name a colour.", "input": "", "output": "red", "history": [["Hi", "Hello!"]]}]
    first, second = load_records(_jsonl(tmp_path / "alpaca.jsonl", alpaca), format="alpaca")
    assert [(m.role, m.content) for m in first.messages] == [("system", "Be brief."),
                                                             ("user", "Translate to French.\n\ncat")]
    assert first.response == "chat" and first.meta == {}
    assert [m.role for m in second.messages] == ["user", "assistant", "user"] and second.query == "Name a colour."

    sharegpt = [{"id": "s1", "source": "web", "conversations": [
        {"from": "system", "value": "Answer in one word."}, {"from": "human", "value": "Sky colour?"},
        {"from": "gpt", "value": "Blue"}]}]
    [record] = load_records(_jsonl(tmp_path / "sharegpt.jsonl", sharegpt), format="sharegpt")
    assert (record.id, record.query, record.response, record.meta) == ("s1", "Sky colour?", "Blue", {"source": "web"})
    assert record.messages[0].role == "system"

    openai = [{"qid": 7, "messages": [{"role": "user", "content": "3 x 3?"}, {"role": "assistant", "content": "9"}]}]
    [record] = load_records(_jsonl(tmp_path / "messages.jsonl", openai), {"id": "qid"}, format="messages")
    assert (record.id, record.query, record.response) == ("7", "3 x 3?", "9")


@pytest.mark.parametrize("format,row,message", [
    ("alpaca", {"instruction": "x"}, r"line 1, field 'output': missing \(data.format: alpaca\)"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "q"}, {"from": "tool", "value": "a"}]},
     r"field 'conversations.1.from': 'tool' is not one of: human, user, gpt, assistant, system"),
    ("sharegpt", {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},
     r"field 'conversations.1': the last turn must be the answer"),
    ("messages", {"messages": []}, r"field 'messages': expected a non-empty list of turns"),
    ("messages", {"messages": [{"role": "assistant", "content": "a"}]}, r"field 'messages': holds only the answer"),
    ("messages", {"messages": [{"role": "assistant", "content": "q"}, {"role": "assistant", "content": "a"}]},
     r"field 'messages': the last message must be the user's query"),
])
def test_a_row_not_in_its_format_names_the_field(tmp_path, format, row, message):
    with pytest.raises(DataError, match=message):
        load_records(_jsonl(tmp_path / "bad.jsonl", [row]), format=format)


def test_a_format_and_a_mapping_of_the_same_field_are_refused():
    from ssrtune.config.run import ConfigError

    files = ["data.recipe=null", "data.train_file=a.jsonl", "data.test_file=a.jsonl", "data.format=alpaca"]
    assert load_config(None, [*files, "data.fields={id: uid}"]).data.format == "alpaca"
    with pytest.raises(ConfigError, match=r"data: `fields` maps response, which format 'alpaca' takes from its own"):
        load_config(None, [*files, "data.fields={response: answer}"])
    with pytest.raises(ConfigError, match=r"data.format: Input should be 'record', 'alpaca', 'sharegpt' or 'messages'"):
        load_config(None, [*files[:3], "data.format=dolly"])


def test_the_shipped_own_data_example_runs_end_to_end(tiny_model, tmp_path, monkeypatch):
    """configs/own-data.yaml as the README's second section runs it, from another directory, on the tiny model."""
    from typer.testing import CliRunner

    from ssrtune.cli import app

    root = ROOT
    shipped = root / "configs" / "own-data.yaml"
    # the README's second section shows this very file, whole
    sections = (root / "README.md").read_text(encoding="utf-8").split("\n## ")
    assert sections[2].startswith("Your own data\n") and f"```yaml\n{shipped.read_text()}```" in sections[2]
    rows = [json.loads(line) for line in (shipped.parent / "own-data" / "train.jsonl").read_text().splitlines()]
    assert all(set(row) == {"question", "answer", "topic"} for row in rows)  # the user's own shape: no id column
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)  # not the repository: the data paths must come from the config's folder
    result = CliRunner().invoke(app, ["run", str(shipped), f"model.name={tiny_model}", f"run_dir={run}",
                                      "train.save_every=1000 steps"])  # no checkpoints: how it trains, not what
    assert result.exit_code == 0, result.output
    assert "[data] 30 train, 12 test examples" in result.stderr
    train = [json.loads(line) for line in (run / "data" / "train.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in train}) == 30 and train[0]["meta"] == {"topic": "geography"}
    assert train[0]["messages"] == [{"role": "system", "content": "Answer the question in a few words."},
                                    {"role": "user", "content": "What is the capital of France?"}]
    for artifact in ("judgments.jsonl", "models/sft/adapter_config.json", "models/ssr/adapter_config.json",
                     "eval/ssr/task.json", "report.md"):
        assert (run / artifact).exists(), artifact
    assert all(name in result.stdout for name in ("base", "sft", "ssr"))
