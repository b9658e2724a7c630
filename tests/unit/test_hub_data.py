"""Task data given as hf://ORG/NAME[:split], read through datasets.load_dataset: offline here, from a local folder at
the path ORG/NAME (load_dataset reads one before asking the Hub); and the one-line error when the Hub is out of
reach."""

import json
import os

import datasets
import pytest
import yaml

from tests.commands import ssrtune
from tests.tiny_run import run_stage
from ssrtune.config.run import load_config
from ssrtune.data.hub import hub_fingerprint
from ssrtune.data.loaders import load_records
from ssrtune.data.schema import DataError
from ssrtune.stages.data import Data

FIELDS = {"id": "uid", "query": "problem", "response": "solution"}


def write_split(folder, split, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def problems(n, start=0):
    return [{"uid": f"p{i}", "problem": f"What is {i} + {i}?", "solution": f"So the answer is {2 * i}."}
            for i in range(start, start + n)]


@pytest.fixture()
def local_hub(tmp_path, monkeypatch):
    """A dataset `acme/math` with train and test splits, as a local folder in the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")  # not the user's cache
    write_split(tmp_path / "acme" / "math", "train", problems(3))
    write_split(tmp_path / "acme" / "math", "test", problems(2, start=10))
    return tmp_path / "acme" / "math"


def test_hub_splits_become_records_and_a_new_revision_is_read_again(local_hub, tmp_path):
    config = load_config(None, {"run_dir": str(tmp_path / "run"), "data": {
        "recipe": None, "train_file": "hf://acme/math:train", "test_file": "hf://acme/math:test", "fields": FIELDS}})
    train, test = run_stage(config, Data())
    assert [r.id for r in train] == ["p0", "p1", "p2"] and test[1].query == "What is 11 + 11?"
    assert test[1].response == "So the answer is 22."
    before = hub_fingerprint("hf://acme/math:test")
    write_split(local_hub, "test", problems(3, start=10))  # the dataset changes
    os.utime(local_hub / "test.jsonl", ns=(1, 10**18))
    assert hub_fingerprint("hf://acme/math:test") != before
    _, test = run_stage(config, Data())
    assert len(test) == 3 and len(load_records(tmp_path / "run" / "data" / "test.jsonl")) == 3


def test_hub_sources_name_what_is_wrong(local_hub):
    with pytest.raises(DataError, match=r"hf://acme/math: holds splits \['train', 'test'\]; name one"):
        load_records("hf://acme/math", FIELDS)
    with pytest.raises(DataError, match=r"hf://acme/math:validation: cannot load the Hugging Face dataset "
                                        r"'acme/math' \(Unknown split"):
        load_records("hf://acme/math:validation", FIELDS)
    with pytest.raises(DataError, match="expected hf://ORG/NAME"):
        load_records("hf://no-org", FIELDS)
    write_split(local_hub, "train", [problems(1)[0], {"uid": "x", "problem": "q", "solution": None}])
    with pytest.raises(DataError, match=r"hf://acme/math:train, line 2, field 'response'"):
        load_records("hf://acme/math:train", FIELDS)


def test_offline_a_hub_dataset_is_one_clear_line(tmp_path, records_file):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "data": {
        "recipe": None, "train_file": "hf://acme/not-cached:train", "test_file": str(records_file)}}))
    # a process of its own: the libraries read the offline switches when they are imported
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = ssrtune("data", config, cwd=tmp_path, environment=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: hf://acme/not-cached:train: cannot load the Hugging Face dataset 'acme/not-cached'")
    assert "needs network" in line
