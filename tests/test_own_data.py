"""A user's own data, first-class: paths relative to the config file, ids made from the content when absent, the
common dataset shapes by name, and the shipped own-data example run end to end."""

import json

import pytest

from ssrtune.config import load_config
from ssrtune.data.loaders import load_records
from ssrtune.data.schema import DataError


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
