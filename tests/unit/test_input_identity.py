"""Inputs that could change under a run unnoticed: Hub data pinned by `@REVISION`, a Hub model known by the commit
its revision resolves to, a dataset folder and a GGUF file known by their content; and GGUF conversions that run at
the same time."""

import shutil
import threading
import time
from types import SimpleNamespace

import datasets
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

import ssrtune.models.loading
from ssrtune.data.hub import hub_dataset, parse
from ssrtune.models.loading import convert_gguf, model_fingerprint, resolve
from ssrtune.config.fields import ModelConfig
from ssrtune.stages.data import source_digest

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


@pytest.mark.parametrize("source, parts", [
    ("hf://acme/math@v1.2:train", ("acme/math", "v1.2", None, "train")),
    ("hf://acme/math@0123abcd/main:test", ("acme/math", "0123abcd", "main", "test")),
    ("hf://acme/math:train", ("acme/math", None, None, "train")),
])
def test_hub_data_takes_a_revision_and_loads_that_revision(source, parts, monkeypatch):
    calls = []

    def load_dataset(name, config=None, **kwargs):
        calls.append((name, kwargs.get("revision"), config, kwargs.get("split")))
        return datasets.Dataset.from_list([{"id": "a"}])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    assert parse(source) == parts
    assert len(hub_dataset(source)) == 1 and calls == [parts]


def test_a_dataset_folder_is_known_by_its_content(tmp_path):
    folder = tmp_path / "data"
    datasets.Dataset.from_list([{"id": "a", "query": "q", "response": "r"}]).save_to_disk(folder)
    before = source_digest(str(folder))
    shutil.copytree(folder, tmp_path / "moved")
    assert source_digest(str(tmp_path / "moved")) == before  # the same content elsewhere
    shutil.rmtree(folder)
    datasets.Dataset.from_list([{"id": "a", "query": "q", "response": "another"}]).save_to_disk(folder)
    assert source_digest(str(folder)) != before


def hub_cache(root, commit):
    """The Hugging Face cache layout for acme/tiny with main at `commit`."""
    repo = root / "models--acme--tiny"
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def test_a_hub_model_is_known_by_its_resolved_commit(tmp_path, monkeypatch):
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(ssrtune.models.loading, "_hub_answers", {})  # what this process was told by the Hub before
    hub_cache(tmp_path, COMMIT_A)
    first = model_fingerprint(ModelConfig(name="acme/tiny"))
    assert model_fingerprint(ModelConfig(name="acme/tiny")) == first
    hub_cache(tmp_path, COMMIT_B)  # main moved on: offline, the cached snapshot says so
    assert model_fingerprint(ModelConfig(name="acme/tiny")) != first
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # online, the Hub says which commit main is
    monkeypatch.setattr(HfApi, "model_info", lambda self, name, revision=None, timeout=None: SimpleNamespace(
        sha=COMMIT_A))
    assert model_fingerprint(ModelConfig(name="acme/tiny")) == first


def test_a_gguf_file_is_converted_by_its_content_not_its_name(tmp_path, monkeypatch):
    monkeypatch.setattr(ssrtune.models.loading, "convert_gguf", lambda gguf, target: target)
    for folder, content in (("one", b"GGUF 1"), ("two", b"GGUF 2"), ("three", b"GGUF 1")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.Q4_K_M.gguf").write_bytes(content)  # one name, one size
    one, two, three = (resolve(str(tmp_path / f / "model.Q4_K_M.gguf")) for f in ("one", "two", "three"))
    assert one != two and one == three


def test_conversions_of_one_file_at_once_take_turns(tiny_model, tmp_path, monkeypatch):
    loads = []

    def slow_load(folder, gguf_file, **kwargs):
        loads.append(gguf_file)
        time.sleep(0.5)  # long enough for the other thread to arrive while this one converts
        return AutoModelForCausalLM.from_pretrained(tiny_model)

    monkeypatch.setattr(ssrtune.models.loading, "AutoModelForCausalLM", SimpleNamespace(from_pretrained=slow_load))
    monkeypatch.setattr(ssrtune.models.loading, "AutoTokenizer", SimpleNamespace(
        from_pretrained=lambda *args, **kwargs: AutoTokenizer.from_pretrained(tiny_model)))
    gguf, target = tmp_path / "m.gguf", tmp_path / "cache" / "m-0123"
    gguf.write_bytes(b"GGUF")
    results, errors = [], []

    def convert():
        try:
            results.append(convert_gguf(gguf, target))
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=convert) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and results == [target, target] and len(loads) == 1
    assert (target / "config.json").exists() and not list(target.parent.glob(".m-0123.tmp*"))


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("not a GGUF file")

    monkeypatch.setattr(ssrtune.models.loading, "AutoModelForCausalLM", SimpleNamespace(from_pretrained=broken))
    (tmp_path / "m.gguf").write_bytes(b"junk")
    with pytest.raises(OSError, match="not a GGUF file"):
        convert_gguf(tmp_path / "m.gguf", tmp_path / "cache" / "m-0123")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".m-0123.lock"]


def test_the_hub_is_asked_once_per_process_even_when_it_cannot_answer(tmp_path, monkeypatch):
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(ssrtune.models.loading, "_hub_answers", {})
    hub_cache(tmp_path, COMMIT_A)
    asked = []

    def unreachable(self, name, revision=None, timeout=None):
        asked.append(name)
        raise ConnectionError("no network")

    monkeypatch.setattr(HfApi, "model_info", unreachable)
    fingerprints = {model_fingerprint(ModelConfig(name="acme/tiny")) for _ in range(3)}  # a fingerprint per stage
    assert asked == ["acme/tiny"] and len(fingerprints) == 1  # one wait for the Hub; the cached snapshot decides
