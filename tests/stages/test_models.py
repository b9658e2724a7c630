"""Several trained models per method: the `models:` schema beside the short `methods:`, each model's own train
settings in its fingerprint and in the training it runs, one target file per method, and the commands that take a
model name."""

from __future__ import annotations

import json

import pytest
import yaml
from safetensors.torch import load_file

from ssrtune.config.run import ConfigError, dump_config, load_config
from ssrtune.storage.fingerprints import file_digest, parts_hash
from ssrtune.methods import METHODS
from ssrtune.stages import train as train_stage
from ssrtune.stages.base import Inputs, Run, trained_methods, trained_models
from ssrtune.stages.select import Select
from ssrtune.stages.train import Train
from ssrtune.storage.artifacts import StaleArtifactError
from ssrtune.storage.layout import TRAINED_MARK as DONE
from ssrtune.storage.layout import RunLayout
from tests.tiny_run import run_stage

MODELS = "models=[{name: lora-a, method: sft}, {name: lora-b, method: sft, train: {seed: 1}}, " \
         "{name: mine, method: ssr, train: {full: true, learning_rate: 2.0e-5}}]"


def test_models_name_their_method_and_override_the_run_train_section():
    config = load_config(None, [MODELS, "train.learning_rate=1e-4", "train.seed=7"])
    models = trained_models(config)
    settings = [m.train_settings(config) for m in models]
    assert [(m.name, m.method.name, t.seed, t.full, t.learning_rate) for m, t in zip(models, settings)] == [
        ("lora-a", "sft", 7, False, 1e-4), ("lora-b", "sft", 1, False, 1e-4), ("mine", "ssr", 7, True, 2e-5)]
    assert [m.name for m in trained_methods(config)] == ["sft", "ssr"] and config.methods is None
    # the short form: one model per method, named after it, on the run's train section
    short = load_config(None, ["methods=[sft, ssr]", "train.seed=7"])
    assert [(m.name, m.method, m.train_settings(short)) for m in trained_models(short)] == [
        ("sft", METHODS["sft"], short.train),
        ("ssr", METHODS["ssr"], short.train)]


@pytest.mark.parametrize("override,message", [
    (["methods=[sft]", MODELS], r"give `methods` \(one model per method\) or `models` \(named models\), not both"),
    (["models=[{name: a, method: dpo}]"], r"models\.0\.method: unknown method 'dpo'; one of: sft, ssr"),
    (["models=[{name: a, method: sft}, {name: a, method: ssr}]"], r"models\.1\.name: 'a' names two models"),
    (["models=[{name: base, method: sft}]"], r"models\.0\.name: `base` names the model before fine-tuning"),
    (["models=[{name: ../x, method: sft}]"], r"models\.0\.name: String should match pattern"),
    (["models=[{name: a, method: sft, train: {max_length: 64}}]"], r"models\.0\.train: `max_length` is the run's"),
    (["models=[{name: a, method: sft, train: {epocs: 2}}]"], r"models\.0\.train: `epocs` is not a train setting"),
    (["models=[{name: a, method: sft, train: {lora_r: 0}}]"], r"models\.0\.train: lora_r: Input should be greater"),
    (["train.batch_size=8", "models=[{name: a, method: sft}, {name: b, method: sft, train: {micro_batch_size: 3}}]"],
     r"models\.1\.train: batch_size 8 is not a whole number of micro_batch_size 3"),
])
def test_bad_models_name_the_entry_and_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override)


def test_both_forms_are_written_to_config_yaml_as_given(tmp_path):
    for overrides in ([MODELS], ["methods=[ssr]"]):
        config = load_config(None, overrides)
        dump_config(config, tmp_path / "config.yaml")
        tree = yaml.safe_load((tmp_path / "config.yaml").read_text())
        assert ("models" in tree) != ("methods" in tree)
        assert load_config(tmp_path / "config.yaml") == config


TRAIN = ("train.batch_size=3", "train.learning_rate=1e-3")


def fake_training(monkeypatch) -> list:
    """The training processes replaced by a record of what each was given: (train settings, models, rows file,
    output folder); a training of two steps results."""
    given = []

    def fake_train(run_config, rows_file, output_dir):
        given.append((run_config.train, run_config.models, rows_file.name, output_dir.name))
        return {"steps": 2, "train_loss": 1.0, "loss_curve": [1.0], "lora": not run_config.train.full}

    monkeypatch.setattr(train_stage, "train_method", fake_train)
    return given


def test_each_model_trains_with_its_own_settings_on_its_method_targets(tiny_run, monkeypatch):
    config = tiny_run.config(*TRAIN, MODELS)
    given = fake_training(monkeypatch)
    models = {m.name: m for m in trained_models(config)}
    runner = Run(config)
    fingerprints = {}
    for name, model in models.items():
        runner(Train(model))
        fingerprints[name] = parts_hash(Train(model).parts(Inputs(runner.config, runner.layout, {})))
        done = json.loads((config.path / "models" / name / DONE).read_text())
        assert (done["name"], done["method"]) == (name, model.method.name)
    seen = {output: (train, models, rows) for train, models, rows, output in given}
    assert seen["lora-b"] == (models["lora-b"].train_settings(config), None, "sft.jsonl") and seen["lora-b"][0].seed == 1
    assert seen["mine"][0].full and seen["mine"][2] == "ssr.jsonl"
    assert len(set(fingerprints.values())) == 3  # a seed of its own is a model of its own
    assert sorted(p.name for p in (config.path / "train").glob("*.jsonl")) == ["sft.jsonl", "ssr.jsonl"]
    # a changed override refuses (or with --fresh redoes) that model only
    changed = tiny_run.config(*TRAIN, MODELS.replace("{seed: 1}", "{seed: 2}"))
    again = Run(changed)
    inputs = Inputs(again.config, again.layout, {})
    assert parts_hash(Train(trained_models(changed)[0]).parts(inputs)) == fingerprints["lora-a"]
    assert parts_hash(Train(trained_models(changed)[1]).parts(inputs)) != fingerprints["lora-b"]


def test_a_changed_train_setting_retrains_naming_it_and_a_change_of_how_it_runs_does_not(tiny_run, monkeypatch):
    """The run's train section decides a short-form model's weights: a setting of what it learns refuses the trained
    model, naming the setting (`ssrtune run` trains it again, with that setting); one of how the training runs
    (`TrainConfig.EXECUTION_ONLY`) keeps it, as does the same model in the `models:` form."""
    given = fake_training(monkeypatch)
    config = tiny_run.config(*TRAIN, "methods=[sft]")
    [sft] = trained_models(config)
    run_stage(config, Train(sft))
    for same in (["train.micro_batch_size=1"], ["train.save_every=1 steps"], ["train.keep_checkpoints=true"],
                 ["train.num_processes=3", "train.batch_size=3"], ["methods=null", "models=[{name: sft, method: sft}]"]):
        run_stage(tiny_run.config(*TRAIN, "methods=[sft]", *same), Train(sft))
    assert len(given) == 1, given  # trained once: each of those kept the model

    changed = tiny_run.config(*TRAIN, "methods=[sft]", "train.learning_rate=0.1")
    with pytest.raises(StaleArtifactError, match=r"models/sft is out of date: train\.learning_rate changed "
                                                 r"\(0\.001 -> 0\.1\)\. `ssrtune run`"):
        run_stage(changed, Train(sft))
    assert len(given) == 1  # refused before any training
    Run(changed, redo_stale=True)(Train(sft))
    assert [train.learning_rate for train, *_ in given] == [1e-3, 0.1]


def test_a_trained_models_fingerprint_hashes_the_parts_earlier_versions_hashed_in_their_order(tiny_run):
    """A model trained by an earlier version stays current: its fingerprint is the hash of these values, in this
    order (the settings' own hash is pinned in test_train_scale.py)."""
    config = tiny_run.config(*TRAIN, "methods=[sft]")
    [sft] = trained_models(config)
    run_stage(config, Select(sft.method))
    parts = Train(sft).parts(Inputs(config, RunLayout(config.path), {}))
    assert list(parts) == ["model", "train", "precision", "train/sft.jsonl"]
    assert parts["train"] == config.train.fingerprint_settings()
    assert parts["precision"] == ("float32", "float32")  # the weights' dtype and the one computed in
    assert parts["train/sft.jsonl"] == file_digest(config.path / "train" / "sft.jsonl")


def test_train_and_export_take_a_model_name(tiny_run, tmp_path, monkeypatch, capsys):
    from tests.commands import cli

    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_run.config(*TRAIN, MODELS).model_dump(mode="json", exclude={"methods"})))
    result = cli(monkeypatch, capsys, "train", config_file, "--model", "nope")
    assert result.returncode == 2
    assert "--model nope: no such model in the configuration; one of: lora-a, lora-b, mine" in result.stderr
    monkeypatch.setattr("sys.argv", ["ssrtune", "train", str(config_file), "--model", "lora-b", "-m", "lora-a"])
    from ssrtune.cli import entry

    with pytest.raises(SystemExit) as done:
        entry()
    assert done.value.code in (0, None)
    out = capsys.readouterr()
    assert out.out.splitlines() == [f"lora-a: {tmp_path / 'run/models/lora-a'}", f"lora-b: {tmp_path / 'run/models/lora-b'}"]
    assert "[train/lora-b] sft, LoRA, 2 steps" in out.err
    models = tmp_path / "run" / "models"
    assert sorted(p.name for p in models.iterdir()) == ["lora-a", "lora-b"]  # not `mine`
    a, b = (load_file(models / m / "adapter_model.safetensors") for m in ("lora-a", "lora-b"))
    assert any(not a[k].equal(b[k]) for k in a)  # seeds 0 and 1 start from different adapters

    from ssrtune.export import export

    card = (export(tmp_path / "run", "lora-b", tmp_path / "exported") / "README.md").read_text()
    assert "# quickstart: lora-b" in card and "with the method **sft**" in card and "ssrtune-sft" in card
    assert "train/sft.stats.json" in card and "| measure | base | lora-b |" not in card  # not evaluated yet
