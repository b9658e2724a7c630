"""A stage refuses to mix records made under other inputs: another model, chat template, system prompt, context
limit, judge, data or training settings. The message says so and names the way out (`--fresh`)."""

from __future__ import annotations

import json
import shutil

import pytest

from ssrtune.config.run import load_config
from ssrtune.stages import data
from ssrtune.stages.base import Inputs, trained_models
from ssrtune.stages.evaluate import Evaluate
from ssrtune.stages.generate import Generate
from ssrtune.stages.judge import Judge
from ssrtune.stages.train import Train
from ssrtune.storage.artifacts import StaleArtifactError
from ssrtune.storage.layout import RunLayout
from tests.tiny_run import TinyRun, record_dicts, run_stage


@pytest.fixture()
def run(tiny_model, records_file, tmp_path):
    """The tiny run on a copy of the tiny model (the tests edit its chat template) and on this test's records (they
    add one), as a function of overrides."""
    tiny = TinyRun(tmp_path, shutil.copytree(tiny_model, tmp_path / "model"), records_file)

    def config(*overrides):
        return tiny.config("generate.max_new_tokens=4", "methods=[sft]", "train.batch_size=3", *overrides)

    config.model, config.records = tiny.model, tiny.records
    return config


def generate(config, fresh=False):
    return run_stage(config, Generate(), fresh)


def judge(config, fresh=False):
    return run_stage(config, Judge(), fresh)


def refusal(stage, *args) -> str:
    """Why `stage(*args)` is refused: the message, which names the way out (`--fresh`)."""
    with pytest.raises(StaleArtifactError, match="--fresh") as refused:
        stage(*args)
    return str(refused.value)


def changes(message: str) -> str:
    """What a refusal says changed: `generations.jsonl is out of date: model.name changed (a -> b). ...`."""
    return message.split(" is out of date: ", 1)[1].split(". ", 1)[0]


def test_generation_refuses_another_model_template_prompt_limit_or_data(run, tmp_path):
    generate(run())
    other_model = tmp_path / "other-model"
    shutil.copytree(run.model, other_model)
    assert changes(refusal(generate, run(f"model.name={other_model}"))) == (
        f"model.name changed ({run.model} -> {other_model})")
    assert changes(refusal(generate, run("model.max_context=512"))) == "model.max_context changed (null -> 512)"
    # the task's system prompt is in its records
    assert changes(refusal(generate, run("data.system_prompt=Be brief."))) == "data/train.jsonl changed"
    settings = json.loads((run.model / "tokenizer_config.json").read_text())
    in_settings = "chat_template" in settings  # else in a file of its own
    template = run.model / ("tokenizer_config.json" if in_settings else "chat_template.jinja")
    original = template.read_text()
    template.write_text(json.dumps({**settings, "chat_template": settings["chat_template"] + " "}) if in_settings
                        else original + " ")
    assert changes(refusal(generate, run())) == "model changed"  # the same name, other files
    template.write_text(original)
    with open(run.records, "a") as handle:
        handle.write(json.dumps({**record_dicts()[0], "id": "new"}) + "\n")
    assert changes(refusal(generate, run())) == "data/train.jsonl changed"
    assert "new" in generate(run(), fresh=True)  # the way out


def test_judging_refuses_another_judge_or_other_generations(run):
    config = run()
    judge(config)
    assert "judge.kind changed (all -> contains)" in changes(refusal(judge, run("judge={kind: contains}")))
    path = config.path / "generations.jsonl"  # other own answers, as from another generation run
    path.write_text(path.read_text().replace('"response": "', '"response": "other ', 1))
    assert "1 answers changed since they were judged (e.g. 'q1')" in refusal(judge, config)
    assert len(judge(run("judge={kind: contains}"), fresh=True)) == 6


def test_training_and_evaluation_refuse_other_settings(run):
    config = run("train.epochs=1")
    [sft] = trained_models(config)
    run_stage(config, Train(sft))
    assert changes(refusal(run_stage, run("train.epochs=1", "train.learning_rate=0.1"), Train(sft))) == (
        f"train.learning_rate changed ({json.dumps(config.train.learning_rate)} -> 0.1)")
    run_stage(config, Evaluate(sft))
    retrained = run("train.epochs=1", "train.learning_rate=0.1")
    run_stage(retrained, Train(sft), fresh=True)
    # the adapter changed under its answers
    assert changes(refusal(run_stage, retrained, Evaluate(sft))) == "models/sft changed"


def test_a_built_in_tasks_system_prompt_is_in_its_data_fingerprint(tmp_path, monkeypatch):
    config = load_config(None, [f"run_dir={tmp_path}", "evaluate.ood={n: 4}"])
    # the prompt the fingerprint names is the one the task's records carry, for every built-in task
    assert set(data.RECIPES) | {config.evaluate.ood.recipe} <= set(data.RECIPE_SYSTEM)
    train_records, _ = data.prepare(config.data)
    for recipe, records in ((config.data.recipe, train_records),
                            (config.evaluate.ood.recipe, data.conversational_qa(config.evaluate.ood))):
        assert {r.messages[0].content for r in records} == {data.RECIPE_SYSTEM[recipe]}
    before = [stage.parts(Inputs(config, RunLayout(config.path), {})) for stage in (data.Data(), data.OodData())]
    monkeypatch.setattr(data, "RECIPE_SYSTEM", {name: text + " Be brief." for name, text in data.RECIPE_SYSTEM.items()})
    after = [stage.parts(Inputs(config, RunLayout(config.path), {})) for stage in (data.Data(), data.OodData())]
    assert before[0] != after[0] and before[1] != after[1]
