"""A stage refuses to mix records made under other inputs: another model, chat template, system prompt, context
limit, judge, data or training settings. The message says so and names the way out (`--fresh`)."""

from __future__ import annotations

import json
import shutil

import pytest

from ssrtune import data, pipeline
from ssrtune.config import load_config
from ssrtune.store import StaleArtifactError
from tests.conftest import record_dicts


@pytest.fixture()
def run(tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in record_dicts()))
    base = [f"run_dir={tmp_path / 'run'}", f"model.name={model}", "data.recipe=null", f"data.train_file={records}",
            f"data.test_file={records}", "generate.max_new_tokens=4", "generate.bf16=false", "methods=[sft]",
            "train.bf16=false", "train.batch_size=3"]

    def config(*overrides):
        return load_config(None, [*base, *overrides])

    config.model, config.records = model, records
    return config


def generate(config, fresh=False):
    return pipeline.generate_stage(config, pipeline.prepare_data(config)[0], fresh)


def refuses(stage, *args):
    with pytest.raises(StaleArtifactError, match="--fresh"):
        stage(*args)
    return True


def test_generation_refuses_another_model_template_prompt_limit_or_data(run, tmp_path, monkeypatch):
    generate(run())
    other_model = tmp_path / "other-model"
    shutil.copytree(run.model, other_model)
    assert refuses(generate, run(f"model.name={other_model}"))
    assert refuses(generate, run("model.max_context=512"))
    with monkeypatch.context() as patch:
        patch.setattr(data, "SYSTEM_PROMPT", data.SYSTEM_PROMPT + " Be brief.")
        assert refuses(generate, run())
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
    records, _ = pipeline.prepare_data(config)
    generations = generate(config)
    pipeline.judge_stage(config, records, generations)
    assert refuses(pipeline.judge_stage, run("judge={kind: contains}"), records, generations)
    path = config.path / "generations.jsonl"  # other own answers, as from another generation run
    path.write_text(path.read_text().replace('"response": "', '"response": "other ', 1))
    assert refuses(pipeline.judge_stage, config, records, generations)
    assert len(pipeline.judge_stage(run("judge={kind: contains}"), records, generations, fresh=True)) == 6


def test_training_and_evaluation_refuse_other_settings(run):
    config = run("train.epochs=1")
    records, test_records = pipeline.prepare_data(config)
    rows = pipeline.select_stage(config, "sft", records, {}, {})
    pipeline.train_stage(config, "sft", rows)
    assert refuses(pipeline.train_stage, run("train.epochs=1", "train.learning_rate=0.1"), "sft", rows)
    pipeline.evaluate_stage(config, "sft", test_records)
    pipeline.train_stage(run("train.epochs=1", "train.learning_rate=0.1"), "sft", rows, fresh=True)
    assert refuses(pipeline.evaluate_stage, config, "sft", test_records)  # the adapter changed under it
