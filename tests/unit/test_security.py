"""Security: secrets stay out of everything a run writes or prints, nothing from a model folder or a run directory
runs code on load, and a run writes only inside its own directory."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from ssrtune.config.run import ConfigError, ModelConfig, TrainConfig, load_config
from tests.commands import env, ssrtune
from tests.tiny_run import TinyRun, record_dicts, write_records

SECRET = "sk-ssrtune-test-5f0c1d2e9a8b7c6d"


class RunsCodeWhenUnpickled:
    """A pickle that creates `marker` when loaded by a plain (unrestricted) unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_full_run_keeps_the_api_key_out_and_cuts_long_documents(tiny_model, tmp_path):
    rows = record_dicts()
    long_doc = " ".join(["The bridge was built of stone by the old town."] * 60) + " The sky is blue."
    rows.append({"id": "long", "messages": [{"role": "user", "content": "What colour is the sky?"}],
                 "context": long_doc, "response": "blue", "meta": {"answerable": True, "answers": ["blue"]}})
    config = TinyRun(tmp_path, tiny_model, write_records(tmp_path / "records.jsonl", rows)).file(
        name="secret", methods=["ssr"], model={"name": str(tiny_model), "max_context": 400, "dtype": "float32"},
        generate={"batch_size": 4, "max_new_tokens": 8}, train={"epochs": 1, "batch_size": 4, "max_length": 300},
        evaluate={"batch_size": 4, "max_new_tokens": 8})
    before = set(tmp_path.rglob("*"))
    # processes of their own: the keys are in their environment, and everything they print (-v: the libraries' logs
    # too) is checked
    secrets = env(OPENAI_API_KEY=SECRET, HF_TOKEN=SECRET)
    run = ssrtune("-v", "run", config, environment=secrets)
    assert run.returncode == 0, run.stderr[-3000:]
    failed = ssrtune("run", config, "name=../../x", "model.name=/no/such/model", environment=secrets)
    assert failed.returncode == 2 and "name" in failed.stderr

    # Nothing written outside the run directory (the model cache lives outside tmp_path).
    assert {p for p in set(tmp_path.rglob("*")) - before if tmp_path / "run" not in p.parents} == {tmp_path / "run"}
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert len(written) > 20
    for output in (run.stdout, run.stderr, failed.stdout, failed.stderr):
        assert SECRET not in output
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path

    # The long document was cut, the same way, wherever a prompt was built; nothing else was.
    cut = json.loads((tmp_path / "run" / "truncation.json").read_text())
    assert set(cut) == {"generate", "train/ssr", "eval/base", "eval/ssr"}
    for stage, summary in cut.items():
        assert summary["ids"] == ["long"] and summary["prompts"] == len(rows), stage
    trained = {r["id"]: r for r in map(json.loads, (tmp_path / "run" / "train" / "ssr.jsonl").open())}
    prompt = trained["long"]["messages"][-1]["content"]
    assert prompt.endswith("\n\nQuestion: What colour is the sky?") and "The sky is blue." not in prompt
    generations = {r["id"]: r for r in map(json.loads, (tmp_path / "run" / "generations.jsonl").open())}
    own = trained["long"]["source"] == "self"
    assert trained["long"]["target"] == (generations["long"]["response"] if own else "blue")  # the answer is whole


@pytest.mark.parametrize("name", ["../../x", "a/b", "/abs", ".hidden", "..", "", "x\\y"])
def test_run_name_cannot_leave_the_runs_folder(name):
    with pytest.raises(ConfigError, match=r"^config: invalid configuration\n  name:"):
        load_config(None, [f"name={json.dumps(name)}"])


@pytest.mark.parametrize("override, key", [("models=[{name: '..', method: ssr}]", "models.0.name"),
                                           ("evaluate.datasets=[{name: '..', file: d.jsonl}]", "evaluate.datasets.0.name"),
                                           ("evaluate.datasets=[{name: .x, file: d.jsonl}]", "evaluate.datasets.0.name")])
def test_every_name_that_becomes_a_file_is_a_plain_name(override, key):
    with pytest.raises(ConfigError, match=rf"\n  {key}: String should match pattern"):
        load_config(None, [override])


def test_plain_run_names_and_an_explicit_run_dir_are_accepted(tmp_path):
    assert str(load_config(None, ["name=exp-1_b.2"]).path) == "runs/exp-1_b.2"
    assert load_config(None, [f"run_dir={tmp_path / 'anywhere'}"]).path == tmp_path / "anywhere"


def test_remote_code_in_a_model_folder_is_not_run(tiny_model, tmp_path):
    from ssrtune.models.loading import load_model

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    marker = tmp_path / "remote-code-ran"
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import LlamaConfig as EvilConfig, LlamaForCausalLM as EvilModel\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig",
                                               "AutoModelForCausalLM": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    assert ModelConfig(name=str(folder)).trust_remote_code is False
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(ModelConfig(name=str(folder)))
    assert not marker.exists()


def test_pickled_weights_are_refused(tiny_model, tmp_path):
    from ssrtune.models.loading import load_model

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pickle-ran"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(RunsCodeWhenUnpickled(marker), protocol=2))
    with pytest.raises(OSError):
        load_model(ModelConfig(name=str(folder)))
    assert not marker.exists()


def test_a_checkpoint_pickle_cannot_run_code_on_resume(tiny_model, tmp_path):
    """transformers' Trainer loads a checkpoint's optimizer, scheduler and RNG state with
    `torch.load(weights_only=True)`, which refuses any global that is not plain tensor data."""
    from ssrtune.data.prompts import prompt_messages
    from ssrtune.data.schema import Record
    from ssrtune.models.loading import load_model, load_tokenizer
    from ssrtune.training.trainer import train

    rows = [{"id": r["id"], "messages": prompt_messages(Record.model_validate(r)), "target": r["response"]}
            for r in record_dicts()]
    model_config = ModelConfig(name=str(tiny_model))
    out = tmp_path / "model"
    config = TrainConfig(epochs=1, batch_size=3, save_every="2 steps")
    train(load_model(model_config), load_tokenizer(model_config), rows, config, out)
    marker = tmp_path / "pickle-ran"
    checkpoint = out / "checkpoint-2"
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        assert (checkpoint / name).exists()
        (checkpoint / name).write_bytes(pickle.dumps(RunsCodeWhenUnpickled(marker), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train(load_model(model_config), load_tokenizer(model_config), rows, config.model_copy(update={"epochs": 2}),
              out)
    assert not marker.exists()
