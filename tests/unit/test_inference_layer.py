"""Every model call goes through ssrtune.inference: no module elsewhere calls a model; each engine is refused where it
can't serve a suite; the evaluation's engine is chosen like generation's; `ssrtune doctor` shows what each stage would
use."""

import ast
from unittest import mock

import pytest
from typer.testing import CliRunner

from ssrtune.cli import app
from ssrtune.config.run import ConfigError, load_config
from ssrtune.inference.factory import build_lm
from ssrtune.inference.lm import GenerationFailed
from ssrtune.models.placement import Gpu, Hardware
from ssrtune.config.fields import EndpointConfig
from ssrtune.stages.base import Run
from ssrtune.stages.evaluate import Evaluate
from tests import fake_openai as fake
from tests.paths import ROOT

PACKAGE = ROOT / "src" / "ssrtune"
# The exceptions are training's loss: the trainer computes it from the model's own forward pass (`model(**inputs)` and
# its `.logits`, on the answer positions only), and the KL penalty from the same model with its adapter disabled.
# That is training, which the Trainer drives, not a model call of a stage.
ALLOWED = {"training/trainer.py": {"model(", ".logits"}, "training/kl_penalty.py": {"model(", ".logits"}}


def model_calls(source: str) -> set[str]:
    """The direct model calls in `source`: `<model>.generate(`, `<model>(`, `.logits`, `LLM(` (vLLM's engine) and
    `ChatEndpoint(` (the server client)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "logits":
            found.add(".logits")
        if not isinstance(node, ast.Call):
            continue
        callee = ast.unparse(node.func)
        last = callee.split(".")[-1]
        if last == "generate" and "model" in callee.lower():
            found.add("model.generate")
        elif last == "model":
            found.add("model(")
        elif last in ("LLM", "ChatEndpoint"):
            found.add(f"{last}(")
    return found


def test_the_detector_finds_each_kind_of_model_call():
    source = ("out = model.generate(ids)\nlogits = self.model(ids).logits\nllm = vllm.LLM(model='m')\n"
              "client = ChatEndpoint(config)\nlm.generate(prompts, 8)\nload_model(config)\n")
    assert model_calls(source) == {"model.generate", "model(", ".logits", "LLM(", "ChatEndpoint("}


def test_no_module_outside_the_inference_layer_calls_a_model():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("inference/"):
            continue
        calls = model_calls(path.read_text(encoding="utf-8")) - ALLOWED.get(relative, set())
        if calls:
            offenders[relative] = sorted(calls)
    assert offenders == {}


def test_each_engine_is_refused_where_it_cannot_serve_a_suite():
    server = "evaluate.endpoint={base_url: 'http://127.0.0.1:1/v1', model: m}"
    with pytest.raises(ConfigError, match="evaluate: `retention` needs log-likelihoods"):
        load_config(None, ["evaluate.engine=openai", server, "evaluate.retention={}"])
    with pytest.raises(ConfigError, match="retention.kl_prompts: the KL from the base model needs whole next-token"):
        load_config(None, ["evaluate.engine=vllm", "evaluate.retention={}"])
    with pytest.raises(ConfigError, match="retention.harness lm-eval runs on the transformers engine"):
        load_config(None, ["evaluate.engine=vllm", "evaluate.retention={kl_prompts: 0, harness: lm-eval}"])
    with pytest.raises(ConfigError, match="`endpoint` is required by engine `openai`"):
        load_config(None, ["evaluate.engine=openai"])
    assert load_config(None, ["evaluate.engine=vllm", "evaluate.retention={kl_prompts: 0}"]).evaluate.engine == "vllm"
    assert load_config(None, ["evaluate.engine=openai", server]).evaluate.endpoint.model == "m"


def test_a_trained_model_is_asked_of_the_server_under_its_name(tmp_path):
    endpoint = EndpointConfig(base_url="http://127.0.0.1:1/v1", model="base")
    assert build_lm("openai", None, endpoint=endpoint).config.model == "base"
    assert build_lm("openai", None, endpoint=endpoint, adapter=tmp_path / "models" / "ssr").config.model == "ssr"


def test_evaluation_on_the_openai_engine_resumes_after_failed_requests(fake_openai, tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("SSRTUNE_TEST_KEY", "sk-test")
    config = tiny_run.config(
        "evaluate.engine=openai",
        f"evaluate.endpoint={{base_url: '{fake_openai.url}', model: served, api_key_env: SSRTUNE_TEST_KEY, "
        "max_retries: 0}")
    fake_openai.handler = lambda r: fake.status(500) if "sky" in fake.last_user_text(r) else fake.answer("Anna")
    with pytest.raises(GenerationFailed, match=r"predictions.jsonl: 1 of 6 answers failed .*rerunning asks again"):
        Run(config)(Evaluate())
    assert {r["json"]["model"] for r in fake_openai.requests} == {"served"}
    fake_openai.requests.clear()
    fake_openai.handler = lambda r: fake.answer("blue")
    results = Run(config)(Evaluate())
    assert len(fake_openai.requests) == 1 and "sky" in fake.last_user_text(fake_openai.requests[0]["json"])
    assert results["task"]["n"] == 6


def test_doctor_prints_the_machine_and_each_stages_engine_and_precision(tmp_path):
    gpus = Hardware(False, (Gpu(0, "NVIDIA A100-SXM4-80GB", (8, 0), 79.3), Gpu(1, "Tesla V100", (7, 0), 31.7)))
    config = tmp_path / "c.yaml"
    config.write_text("methods: [ssr, s3ft]\ngenerate: {engine: vllm}\nevaluate: {engine: transformers}\n"
                      "judge: {kind: llm, model: {dtype: float32}}\n")
    with mock.patch("ssrtune.models.placement.hardware", return_value=gpus), \
            mock.patch("ssrtune.doctor.hardware", return_value=gpus):
        result = CliRunner().invoke(app, ["doctor", str(config), "train.full=true"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "gpu 0       NVIDIA A100-SXM4-80GB, 79.3 GiB, compute capability 8.0, bf16 native" in out
    assert "gpu 1       Tesla V100, 31.7 GiB, compute capability 7.0, bf16 not native" in out
    assert "cpu bf16" in out and "cache       " in out and "extra       vllm: vllm" in out
    lines = {line.split("  ")[0]: line for line in out.splitlines()}
    for stage in ("generate", "restate/paraphrases"):  # every stage of the plan, each once; every GPU counts
        assert "vllm: smollm2-135m-instruct, float16, tensor parallel 1" in lines[stage]
    assert lines["judge"] == lines["judge/paraphrases"].replace("judge/paraphrases", "judge".ljust(17))
    assert "transformers: smollm2-135m-instruct, cuda:0, float32" in out  # the judge model's own dtype
    for model in ("ssr", "s3ft"):
        assert "full fine-tuning, cuda:0, float32 weights under bfloat16 autocast, 1 process(es)" in lines[f"train/{model}"]
        assert lines[f"evaluate/{model}"].endswith("transformers: smollm2-135m-instruct, cuda:0, bfloat16")
    assert lines["evaluate/base"].endswith("transformers: smollm2-135m-instruct, cuda:0, bfloat16")
    with mock.patch("ssrtune.models.placement.hardware", return_value=Hardware(False, ())):
        result = CliRunner().invoke(app, ["doctor", str(config), "model.dtype=float16"])
    assert "error: model.dtype float16 needs a GPU" in result.output


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda path: path.name)
def test_doctor_describes_every_shipped_configuration_stage_by_stage(config):
    """Every stage of the run's plan gets its line (a configuration with `models:`, an eval set without a judge of
    its own), and nothing is worked out apart from the plan."""
    from ssrtune.config.run import load_config
    from ssrtune.pipeline import plan
    from ssrtune.stages.base import plan_closure, without_parts

    result = CliRunner().invoke(app, ["doctor", str(config)])
    assert result.exit_code == 0, result.output
    described = {line.split("  ")[0] for line in result.output.splitlines()}
    loaded = load_config(config)
    stages = plan(loaded)
    expected = {s.key for s in without_parts(plan_closure(stages, loaded), stages)
                if s.name in ("generate", "restate", "judge", "train", "evaluate")}
    assert expected and expected <= described, expected - described
