import pytest

from ssrtune.config import ConfigError, load_config


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
