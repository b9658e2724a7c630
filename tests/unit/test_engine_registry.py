"""Engines come from a registry and declare what they can do: an engine defined here, in the test alone, is usable
from a configuration; the configuration's errors name the registered engines and refuse by capability; the built-in
engines register without importing their back-ends, and record the same identities as before the registry."""

import json
import subprocess
import sys
from collections.abc import Sequence

import pytest

from ssrtune.config.run import ConfigError, load_config
from ssrtune.inference.engine import ENGINES, Capabilities, Engine, EngineSetup
from ssrtune.inference.factory import stage_engine_identity
from ssrtune.inference.lm import LM, GenerationFailed, Prompt
from ssrtune.models.placement import place
from ssrtune.stages.base import Run
from ssrtune.stages.generate import Generate
from tests.tiny_run import record_dicts


class EchoLM(LM):
    """Answers each chat with its model's name and the question's last word; a question about the sky fails while
    `sky_down` holds."""

    sky_down = True
    asked: list[str] = []

    def __init__(self, model_name: str):
        self.model_name = model_name

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = (), *,
                 batch_size: int | None = None, description: str | None = None) -> list:
        questions = [prompt[-1]["content"] for prompt in prompts]
        EchoLM.asked += questions
        return [GenerationFailed("the sky is down") if "sky" in q and EchoLM.sky_down else
                f"{self.model_name.rsplit('/', 1)[-1]} {q.split()[-1]}" for q in questions]


@ENGINES.register("echo")
class EchoEngine(Engine):
    """The whole of adding an engine: one declaration and its LM."""

    @classmethod
    def build(cls, setup: EngineSetup) -> LM:
        return EchoLM(setup.model.name)


def test_an_engine_defined_in_a_test_generates_from_a_config_and_its_failures_are_retried(tiny_run, monkeypatch):
    EchoLM.asked.clear()
    monkeypatch.setattr(EchoLM, "sky_down", True)  # the class's own state, as other tests find it after this one
    config = tiny_run.config("generate.engine=echo")
    questions = {r["id"]: r["messages"][-1]["content"] for r in record_dicts()}
    sky = [i for i, q in questions.items() if "sky" in q]
    generations = Run(config)(Generate())
    assert sorted(generations) == sorted(set(questions) - set(sky)) and sky
    assert all(g["response"] == f"{tiny_run.model.name} {questions[i].split()[-1]}" for i, g in generations.items())
    failures = json.loads((config.path / "generations.failures.json").read_text())
    assert failures == {"n_failed": len(sky), "failures": {i: "the sky is down" for i in sky}}
    assert stage_engine_identity(config, config.generate) == ["echo"]  # what its answers' fingerprint holds

    monkeypatch.setattr(EchoLM, "sky_down", False)
    EchoLM.asked.clear()
    generations = Run(config)(Generate())  # a rerun asks again for exactly the failed prompts
    assert [asked.rsplit("Question: ", 1)[-1] for asked in EchoLM.asked] == [questions[i] for i in sky]
    assert sorted(generations) == sorted(questions)


def test_the_configurations_engine_errors_name_the_registered_engines():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["generate.engine=ecko"])
    listed = str(error.value).split("generate.engine: unknown engine 'ecko'; one of: ")[1].split(";")[0]
    assert sorted(listed.split(", ")) == ["echo", "openai", "transformers", "vllm"]  # the built-ins and this test's
    assert "echo" in list(ENGINES) and "did you mean `echo`?" in str(error.value)
    server = "evaluate.endpoint={base_url: 'http://127.0.0.1:1/v1', model: m}"
    with pytest.raises(ConfigError, match=r"evaluate: `endpoint` is only for an engine that talks to a server "
                                          r"\(openai\), not `echo`"):
        load_config(None, ["evaluate.engine=echo", server])


def test_a_suite_is_refused_by_the_engines_capabilities():
    with pytest.raises(ConfigError, match="`retention` needs log-likelihoods, which engine echo does not give: use "
                                          "engine transformers or vllm, or retention: null"):
        load_config(None, ["evaluate.engine=echo", "evaluate.retention={}"])
    assert load_config(None, ["evaluate.engine=echo"]).evaluate.engine == "echo"  # generation alone needs nothing
    assert ENGINES.that_can("next_token_distributions") == "transformers"
    assert ENGINES["echo"].can == Capabilities()


def test_the_built_in_engines_register_without_importing_their_back_ends():
    code = ("import sys; from ssrtune.config.run import load_config; from ssrtune.inference.engine import ENGINES\n"
            "server = \"generate.endpoint={base_url: 'http://127.0.0.1:1/v1', model: m}\"\n"
            "load_config(None, ['generate.engine=openai', server, 'evaluate.engine=vllm'])\n"
            "heavy = ('torch', 'transformers', 'vllm', 'openai')\n"
            "print(sorted(ENGINES), sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['openai', 'transformers', 'vllm'] []"


def test_the_built_in_engines_identities_are_those_fingerprints_held_before_the_registry():
    server = "{base_url: 'http://127.0.0.1:1/v1', model: served}"
    config = load_config(None, ["evaluate.engine=vllm", "vllm.dtype=float16", "generate.engine=openai",
                                f"generate.endpoint={server}"])
    assert stage_engine_identity(config, config.generate) == ["openai", "served"]
    assert stage_engine_identity(config, config.evaluate) == ["vllm", "float16"]
    config = load_config(None, ["model.dtype=float32"])
    assert stage_engine_identity(config, config.generate) == ["transformers", *place(config.model).precision]
