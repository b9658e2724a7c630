"""The Python API: cheap to import, configs from files or mappings, a run stage by stage, judges on their own. The
whole chain through it runs in test_task_scoring (the example script)."""

import importlib
import subprocess
import sys

import pytest

import ssrtune
from ssrtune.config.run import ConfigError, RunConfig
from ssrtune.judges.base import JudgeInput


def test_import_ssrtune_loads_nothing_heavy():
    code = ("import sys, ssrtune; print([m for m in ('torch', 'transformers', 'pydantic', 'datasets', 'typing') "
            "if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
    assert {"run", "Pipeline", "load_config", "RunConfig", "judges"} <= set(dir(ssrtune))
    # the errors a caller catches: a bad setting, a bad data record, results made under other settings
    from ssrtune.data.schema import DataError
    from ssrtune.storage.artifacts import StaleArtifactError

    assert (ssrtune.ConfigError, ssrtune.DataError, ssrtune.StaleArtifactError) == (ConfigError, DataError,
                                                                                     StaleArtifactError)


def test_load_config_takes_key_value_strings_or_a_mapping(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("name: a\ntrain: {epochs: 2}\n")
    from_strings = ssrtune.load_config(path, ["train.lora_r=4", "judge={kind: numeric}"])
    from_mapping = ssrtune.load_config(path, {"train.lora_r": 4, "judge": {"kind": "numeric"}})
    assert isinstance(from_strings, ssrtune.RunConfig) and from_strings == from_mapping
    assert from_mapping.train.epochs == 2 and from_mapping.judge.kind == "numeric"
    with pytest.raises(ConfigError, match="train.lora_rank"):
        ssrtune.load_config(None, {"train.lora_rank": 4})


def test_pipeline_runs_a_stage_after_the_ones_it_needs_each_told_once(tiny_run, tmp_path, capsys):
    pipe = ssrtune.Pipeline(tiny_run.tree(generate={"max_new_tokens": 4}))  # a mapping, as a file holds it
    assert isinstance(pipe.config, RunConfig) and pipe.path == tmp_path / "run"
    train, test = pipe.data()
    assert len(train) == len(test) == 6
    rows = pipe.select("ssr")  # the own answers and the judge first
    assert len(rows) == 6 and (tmp_path / "run" / "judgments.jsonl").exists()
    assert pipe.judge() == pipe.judge()  # reused: the same verdicts
    capsys.readouterr()
    pipe.select("sft")
    pipe.judge(fresh=True)
    assert [line.split("]")[0] + "]" for line in capsys.readouterr().err.splitlines()] == ["[select/sft]", "[judge]"]
    with pytest.raises(ValueError, match="'sdft' is not a model of this run; one of: sft, ssr"):
        pipe.train("sdft")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        pipe.select("nope")


def test_a_judge_on_its_own_from_a_mapping_or_a_config():
    from ssrtune.judges import build
    from ssrtune.config.judges import grounded_qa_judge

    numeric = ssrtune.judges.build({"kind": "numeric"})
    items = [JudgeInput("1", "How many?", None, "12 * 4 = 48. So the answer is 48.", "It is 48."),
             JudgeInput("2", "How many?", None, "So the answer is 7.", "8")]
    assert [j.verdict for j in numeric.judge(items)] == ["accept", "reject"]
    grounded = build(grounded_qa_judge())
    assert grounded.judge([JudgeInput("1", "Who?", "Anna wrote it.", "Anna", "Anna did.")])[0].verdict == "accept"
    importlib.import_module("ssrtune.judges.factory")  # its module is not named `build`: nothing shadows it
    assert callable(ssrtune.judges.build)
    with pytest.raises(ValueError, match="kind"):
        build({"kind": "nope"})
