"""A configured model that can't be had (a Hub model not cached while offline, a path that does not exist) is one line
before any work starts, and `ssrtune doctor` says where each model comes from (ssrtune.models.source)."""

import sys
from unittest import mock

import pytest

from ssrtune.config.run import ConfigError, load_config
from ssrtune.models.source import ModelUnavailable, check_models_available, model_source
from ssrtune.config.fields import ModelConfig


@pytest.fixture()
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline: what HF_HUB_CACHE and HF_HUB_OFFLINE=1 make huggingface_hub read at its
    import (the constants its functions consult)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_a_hub_model_not_cached_offline_is_one_line_naming_it(empty_hub_cache):
    with pytest.raises(ModelUnavailable) as err:
        model_source(ModelConfig(name="mistralai/Mistral-7B-Instruct-v0.3"))
    message = str(err.value)
    assert "'mistralai/Mistral-7B-Instruct-v0.3' is not in the Hugging Face cache" in message
    assert str(empty_hub_cache) in message and "HF_HUB_OFFLINE" in message and "\n" not in message
    # the judge's model is checked too, named by its setting
    config = load_config(None, ["judge={kind: llm, model: {name: org/judge-model}}"])
    with pytest.raises(ModelUnavailable, match=r"^judge.model: model 'org/judge-model' is not in the Hugging Face"):
        check_models_available(config)


def test_a_cached_snapshot_or_a_local_folder_is_found_offline(empty_hub_cache, tiny_model):
    snapshot = empty_hub_cache / "models--org--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (empty_hub_cache / "models--org--tiny" / "refs").mkdir()
    (empty_hub_cache / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    assert model_source(ModelConfig(name="org/tiny")).startswith(f"Hugging Face cache ({empty_hub_cache})")
    with pytest.raises(ModelUnavailable, match="'org/tiny' at revision v2 is not in the Hugging Face cache"):
        model_source(ModelConfig(name="org/tiny", revision="v2"))
    assert model_source(ModelConfig(name=str(tiny_model))) == f"local folder {tiny_model}"
    with pytest.raises(ModelUnavailable, match=r"model '/no/such/folder': no such file or folder \(/no/such/folder\), "
                                               "and not a Hugging Face model id"):
        model_source(ModelConfig(name="/no/such/folder"))


def test_a_hub_model_not_cached_online_is_asked_of_the_hub(empty_hub_cache, monkeypatch):
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with mock.patch.object(HfApi, "model_info", side_effect=ConnectionError("Failed to resolve 'huggingface.co'")):
        with pytest.raises(ModelUnavailable, match=r"the Hub can't be reached \(Failed to resolve 'huggingface.co'\)"):
            model_source(ModelConfig(name="org/model"))
    with mock.patch.object(HfApi, "model_info", return_value=object()) as asked:
        assert model_source(ModelConfig(name="org/model")).startswith("the Hugging Face Hub (not cached")
    assert asked.call_args.kwargs["timeout"] > 0


def test_run_and_doctor_say_it_before_any_work(empty_hub_cache, tmp_path, monkeypatch, capsys):
    """The command line's entry point, offline with an empty cache: one line, no run folder; doctor names the model."""
    from ssrtune.cli import entry

    config = tmp_path / "c.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\nmodel: {{name: mistralai/Mistral-7B-Instruct-v0.3}}\n")
    monkeypatch.setattr(sys, "argv", ["ssrtune", "run", str(config)])
    with pytest.raises(SystemExit) as exit_status:
        entry()
    assert exit_status.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and "model: model 'mistralai/Mistral-7B-Instruct-v0.3' is not in the Hugging Face cache" \
        in errors[0], errors
    assert not (tmp_path / "run").exists()  # no stage ran
    monkeypatch.setattr(sys, "argv", ["ssrtune", "doctor", str(config)])
    with pytest.raises(SystemExit) as exit_status:
        entry()
    assert exit_status.value.code in (0, None)
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("model "))
    assert "mistralai/Mistral-7B-Instruct-v0.3: error: model 'mistralai/Mistral-7B-Instruct-v0.3' is not in" in line


def test_a_stage_command_says_it_before_any_work_too(empty_hub_cache, tmp_path):
    from typer.testing import CliRunner

    from ssrtune.cli import app

    config = tmp_path / "c.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\nmodel: {{name: mistralai/Mistral-7B-Instruct-v0.3}}\n")
    result = CliRunner().invoke(app, ["generate", str(config)])
    assert isinstance(result.exception, ConfigError), result.output
    assert "model 'mistralai/Mistral-7B-Instruct-v0.3' is not in the Hugging Face cache" in str(result.exception)
    assert not (tmp_path / "run").exists()  # no stage ran
