import pytest

from ssrtune.config import ConfigError, load_config, load_judge_config


def test_defaults_are_the_quickstart_task():
    config = load_config(None)
    assert config.methods == ["sft", "ssr"]
    assert config.judge.kind == "all" and [j.kind for j in config.judge.judges] == ["refusal", "contains"]
    assert str(config.path) == "runs/quickstart"


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  epochs: 2\n")
    config = load_config(path, ["train.epochs=3", "data.n_train=10", "methods=[ssr]", "train.full=true"])
    assert config.train.epochs == 3 and config.data.n_train == 10
    assert config.methods == ["ssr"] and config.train.full is True


def test_unknown_key_is_rejected_with_its_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epocs: 2\n")
    with pytest.raises(ConfigError, match=r"train\.epocs"):
        load_config(path)


def test_wrong_type_is_rejected_with_its_path():
    with pytest.raises(ConfigError, match=r"data\.n_train"):
        load_config(None, ["data.n_train=many"])


def test_combining_judge_needs_children():
    with pytest.raises(ConfigError, match="judges"):
        load_config(None, ["judge={kind: any}"])


def test_override_needs_equals_sign():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.epochs"])


def test_every_judge_kind_from_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "methods: [sft, ssr, s3ft, sdft, self_only]\n"
        "judge:\n  kind: any\n  judges:\n"
        "    - {kind: exact}\n    - {kind: token_f1, threshold: 0.6}\n    - {kind: recall, threshold: 1.0}\n"
        "    - {kind: numeric, tolerance: 0.01}\n    - {kind: regex, pattern: 'answer: (.*)', ignore_case: false}\n"
        "    - {kind: llm, model: {name: some/model}, template: my.jinja, verdict_words: [CORRECT, INCORRECT]}\n")
    config = load_config(path)
    assert config.methods == ["sft", "ssr", "s3ft", "sdft", "self_only"]
    kinds = [j.kind for j in config.judge.judges]
    assert kinds == ["exact", "token_f1", "recall", "numeric", "regex", "llm"]
    assert config.judge.judges[5].verdict_words == ("CORRECT", "INCORRECT")


@pytest.mark.parametrize("judge,message", [
    ("{kind: regex}", "`pattern` is required"),
    ("{kind: regex, pattern: '(unclosed'}", "not a valid regular expression"),
    ("{kind: contains, pattern: x}", "`pattern` is required by `regex`, and only by it"),
    ("{kind: exact, threshold: 0.3}", "`threshold` does not apply to a `exact` judge"),
    ("{kind: refusal, skip_refusals: false}", "`skip_refusals` does not apply"),
    ("{kind: llm, verdict_words: ['Yes', 'yes']}", "two different"),
    ("{kind: llm, verdict_words: [Yes, No]}", r"judge\.verdict_words\.0"),  # YAML reads unquoted Yes as true
    ("{kind: token_f1, threshold: 1.5}", "threshold"),
    ("{kind: llm, backend: cloud}", "backend"),
    ("{kind: all, judges: [{kind: recall, tolerance: 1}]}", "`tolerance` does not apply"),
])
def test_bad_judge_settings_are_named(judge, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"judge={judge}"])


def test_unknown_method_is_rejected():
    with pytest.raises(ConfigError, match="methods"):
        load_config(None, ["methods=[ssr, dpo]"])


def test_judge_file(tmp_path):
    path = tmp_path / "judge.yaml"
    path.write_text("kind: llm\nthreshold: 0.7\n")
    assert load_judge_config(path).threshold == 0.7
    path.write_text("kind: llm\nthreshhold: 0.7\n")
    with pytest.raises(ConfigError, match=f"{path}.*\n.*threshhold"):
        load_judge_config(path)


def test_the_resolved_config_written_to_disk_loads_again(tmp_path):
    from ssrtune.config import dump_config

    config = load_config(None, ["methods=[sft, ssr, s3ft]", "judge={kind: all, judges: [{kind: refusal}, "
                                "{kind: token_f1, threshold: 0.7}]}"])
    dump_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
