"""A stage refuses to mix records made under other inputs: another model, chat template, system prompt, context
limit, judge, data or training settings. The message says so and names the way out (`--fresh`)."""

from __future__ import annotations

import json
import shutil

import pytest

from ssrtune.config.run import load_config
from ssrtune.stages import data
from ssrtune.stages.base import Run, trained_models
from ssrtune.stages.evaluate import Evaluate
from ssrtune.stages.generate import Generate
from ssrtune.stages.judge import Judge
from ssrtune.stages.train import Train
from ssrtune.storage.artifacts import StaleArtifactError
from tests.tiny_run import record_dicts, run_stage


@pytest.fixture()
def run(tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in record_dicts()))
    base = [f"run_dir={tmp_path / 'run'}", f"model.name={model}", "data.recipe=null", f"data.train_file={records}",
            f"data.test_file={records}", "generate.max_new_tokens=4", "model.dtype=float32", "methods=[sft]",
            "train.batch_size=3"]

    def config(*overrides):
        return load_config(None, [*base, *overrides])

    config.model, config.records = model, records
    return config


def generate(config, fresh=False):
    return run_stage(config, Generate(), fresh)


def judge(config, fresh=False):
    return run_stage(config, Judge(), fresh)


def refuses(stage, *args):
    with pytest.raises(StaleArtifactError, match="--fresh"):
        stage(*args)
    return True


def test_generation_refuses_another_model_template_prompt_limit_or_data(run, tmp_path):
    generate(run())
    other_model = tmp_path / "other-model"
    shutil.copytree(run.model, other_model)
    assert refuses(generate, run(f"model.name={other_model}"))
    assert refuses(generate, run("model.max_context=512"))
    assert refuses(generate, run("data.system_prompt=Be brief."))  # the task's system prompt is in its records
    template = run.model / "tokenizer_config.json"
    original = template.read_text()
    settings = json.loads(original)
    if "chat_template" in settings:
        template.write_text(json.dumps({**settings, "chat_template": settings["chat_template"] + " "}))
    else:
        (run.model / "chat_template.jinja").write_text((run.model / "chat_template.jinja").read_text() + " ")
    assert refuses(generate, run())
    template.write_text(original)
    with open(run.records, "a") as handle:
        handle.write(json.dumps({**record_dicts()[0], "id": "new"}) + "\n")
    assert refuses(generate, run())
    assert "new" in generate(run(), fresh=True)  # the way out


def test_judging_refuses_another_judge_or_other_generations(run):
    config = run()
    judge(config)
    assert refuses(judge, run("judge={kind: contains}"))
    path = config.path / "generations.jsonl"  # other own answers, as from another generation run
    path.write_text(path.read_text().replace('"response": "', '"response": "other ', 1))
    assert refuses(judge, config)
    assert len(judge(run("judge={kind: contains}"), fresh=True)) == 6


def test_training_and_evaluation_refuse_other_settings(run):
    config = run("train.epochs=1")
    [sft] = trained_models(config)
    run_stage(config, Train(sft))
    assert refuses(run_stage, run("train.epochs=1", "train.learning_rate=0.1"), Train(sft))
    run_stage(config, Evaluate(sft))
    retrained = run("train.epochs=1", "train.learning_rate=0.1")
    run_stage(retrained, Train(sft), fresh=True)
    assert refuses(run_stage, retrained, Evaluate(sft))  # the adapter changed under its answers


def test_a_built_in_tasks_system_prompt_is_in_its_data_fingerprint(tmp_path, monkeypatch):
    config = load_config(None, [f"run_dir={tmp_path}", "evaluate.ood={n: 4}"])
    # the prompt the fingerprint names is the one the task's records carry, for every built-in task
    assert set(data.RECIPES) | {config.evaluate.ood.recipe} <= set(data.RECIPE_SYSTEM)
    train_records, _ = data.prepare(config.data)
    for recipe, records in ((config.data.recipe, train_records),
                            (config.evaluate.ood.recipe, data.conversational_qa(config.evaluate.ood))):
        assert {r.messages[0].content for r in records} == {data.RECIPE_SYSTEM[recipe]}
    before = [stage.inputs(Run(config)) for stage in (data.Data(), data.OodData())]
    monkeypatch.setattr(data, "RECIPE_SYSTEM", {name: text + " Be brief." for name, text in data.RECIPE_SYSTEM.items()})
    after = [stage.inputs(Run(config)) for stage in (data.Data(), data.OodData())]
    assert before[0] != after[0] and before[1] != after[1]
