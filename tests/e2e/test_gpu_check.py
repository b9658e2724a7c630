"""bench/gpu.py's CPU parts: the model shapes, the fitted tokenizer and the v3 template, the plan (each check's
configuration, the refusals on one mocked H100, the stage loop on the CPU), the rows and table, the probe in the
processes a stage starts, and the one-line exit without a GPU. The check itself needs a GPU: no GPU number is claimed
from these tests."""

import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

from transformers import PreTrainedModel

from ssrtune.config.run import ModelConfig
from ssrtune.models.loading import load_model, load_tokenizer
from tests.paths import ROOT

# loaded from its file: bench/ on sys.path would shadow top-level modules with its train.py and generate.py
_spec = importlib.util.spec_from_file_location("gpu", ROOT / "bench" / "gpu.py")
gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu)


@pytest.fixture()
def tokenizer(tiny_model):
    return load_tokenizer(ModelConfig(name=str(tiny_model)))


@pytest.mark.parametrize("shape, parameters", [("smollm2-135m", 134_515_008), ("mistral-7b", 7_248_023_552)])
def test_the_shapes_have_their_models_parameter_counts(shape, parameters, tokenizer):
    """Counted on the meta device (no memory): embeddings, attention with grouped KV heads, MLP, norms, head."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(gpu.model_config(gpu.SHAPES[shape], tokenizer))
    assert model.num_parameters() == parameters


def test_a_fitted_tokenizer_produces_only_ids_the_model_has(tokenizer):
    fitted = gpu.fitted_tokenizer(tokenizer, 300)
    text = "Who wrote the letter? The letter was written by Anna in Paris. Bread is baked every morning."
    ids = fitted(text)["input_ids"]
    assert max(tokenizer(text)["input_ids"]) >= 300 and max(ids) < 300  # the test can tell the two apart
    assert fitted.decode(ids) == text
    chat = [{"role": "user", "content": text}]
    assert fitted.apply_chat_template(chat, tokenize=False) == tokenizer.apply_chat_template(chat, tokenize=False)
    assert (fitted.eos_token_id, fitted.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)


def test_a_random_model_is_built_from_a_shape_and_loads_in_ssrtune(tokenizer, tmp_path):
    from ssrtune.data.chat_format import has_system_role

    shape = {**gpu.SHAPES["smollm2-135m"], "num_hidden_layers": 2, "vocab_size": 512}
    folder = gpu.build_model(shape, tokenizer, tmp_path / "model", device="cpu",
                             chat_template=gpu.TEMPLATE.read_text(encoding="utf-8"))
    model = load_model(ModelConfig(name=str(folder)), dtype=torch.bfloat16)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 2
    assert model.config.hidden_size == 576 and model.config.rope_parameters["rope_theta"] == 100000.0
    built = load_tokenizer(ModelConfig(name=str(folder)))
    assert built.chat_template == gpu.TEMPLATE.read_text(encoding="utf-8") and not has_system_role(built)


@pytest.fixture()
def mistral_7b(tokenizer, tmp_path):
    """The 7B shape's configuration with the v3 template (no weights: what the plan's checks read of the model)."""
    folder = tmp_path / "mistral-7b"
    gpu.model_config(gpu.SHAPES["mistral-7b"], tokenizer).save_pretrained(folder)
    tokenizer.chat_template = gpu.TEMPLATE.read_text(encoding="utf-8")
    tokenizer.save_pretrained(folder)
    return folder


def test_the_checks_cover_the_paths_of_issue_22(mistral_7b):
    """vLLM for answers and evaluation with the adapter unmerged, an llm judge on vLLM, LoRA in a child process,
    QLoRA, a retention benchmark and the KL on the GPU: as the configurations say, on one (mocked) H100."""
    from ssrtune.config.run import load_config
    from ssrtune.models.placement import Gpu, Hardware
    from ssrtune.preflight import check_run, train_in_child_process

    plans = {name: load_config(ROOT / "configs" / "quickstart.yaml", [f"model.name={mistral_7b}", *overrides])
             for name, overrides in gpu.checks(mistral_7b).items()}
    lora, qlora = plans["lora-vllm"], plans["qlora-kl"]
    assert (lora.generate.engine, lora.evaluate.engine, lora.evaluate.judge.kind, lora.evaluate.judge.engine) == (
        "vllm", "vllm", "llm", "vllm") and not lora.train.full and lora.train.quantization is None
    [entry] = qlora.model_entries()
    assert entry.resolve(qlora.train).quantization == "4bit" and qlora.evaluate.engine == "transformers"
    assert qlora.evaluate.retention.kl_prompts > 0 and qlora.evaluate.retention.benchmarks
    h100 = Hardware(False, (Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0), 79.2),))
    with mock.patch("ssrtune.models.placement.hardware", return_value=h100):
        assert train_in_child_process(lora) and not train_in_child_process(qlora)
        for plan in plans.values():
            check_run(plan)  # nothing the GPU run would be refused for


def test_the_refusal_cases_are_refused_for_their_reasons_on_one_gpu(mistral_7b):
    from ssrtune.models.placement import Gpu, Hardware

    h100 = Hardware(False, (Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0), 79.2),))
    properties = SimpleNamespace(total_memory=int(79.2 * 2**30))
    with mock.patch("ssrtune.models.placement.hardware", return_value=h100), \
            mock.patch("torch.cuda.device_count", return_value=1), \
            mock.patch("torch.cuda.get_device_properties", return_value=properties):
        rows = gpu.preflight_rows(mistral_7b)
    assert len(rows) == 5 and all(row["problems"] == [] for row in rows), rows
    on_h200 = gpu.refusals(mistral_7b, 1, 139.8)["a full fine-tune that does not fit the GPU"]
    assert on_h200 == (["train.full=true"], None)  # 108 GiB fit there: allowed


def test_stages_run_one_by_one_with_their_devices_and_peaks(tiny_model, records_file, tmp_path):
    """The check's stage loop on the CPU: every stage of the plan once, in order, with the devices its models ran on
    (the probe) -- off the GPU, so the model stages say where they ran."""
    probe = tmp_path / "probe.jsonl"
    gpu.install_probe(str(probe))
    overrides = [f"model.name={tiny_model}", "model.dtype=float32", "methods=[sft]",
                 f"data={{recipe: null, train_file: {records_file}, test_file: {records_file}}}", "train.batch_size=3",
                 "evaluate.max_new_tokens=2", "evaluate.retention=null", "evaluate.batch_size=6"]
    try:
        with mock.patch("torch.cuda.reset_peak_memory_stats"), mock.patch("torch.cuda.max_memory_allocated",
                                                                           return_value=0):
            rows = gpu.run_stages("cpu", overrides, tmp_path, probe)
    finally:
        del PreTrainedModel.__call__  # back to torch.nn.Module's
    assert [r["stage"] for r in rows] == ["data", "select/sft", "train/sft", "evaluate/base", "evaluate/sft", "report"]
    by_stage = {r["stage"]: r for r in rows}
    assert by_stage["data"]["problems"] == [] and by_stage["data"]["device"] == "no model"
    assert by_stage["evaluate/sft"]["device"] == "cpu, float32"
    assert by_stage["evaluate/sft"]["problems"] == ["models ran on cpu"]


def test_a_stage_row_takes_the_peak_of_every_process_and_the_table_shows_it():
    probes = [{"t": 1, "model": "MistralForCausalLM", "device": "cuda", "dtype": "torch.bfloat16"},
              {"t": 2, "pid": 123, "device": "cuda", "peak_gib": 30.5}]  # a vLLM engine's process, at its exit
    row = gpu.stage_row("evaluate/ssr", 61.0, probes, own_peak_gib=2.0, error=None)
    assert (row["device"], row["peak_gib"], row["problems"]) == ("cuda, bfloat16", 30.5, [])
    failed = gpu.stage_row("train/qlora", 3.0, [], own_peak_gib=0.0, error="MissingExtraError: bitsandbytes")
    text = gpu.table("qlora-kl: mistral-7b on NVIDIA H100", [row, failed])
    assert "| evaluate/ssr | cuda, bfloat16 | 61.0 | 30.5 | ok |" in text
    assert "| train/qlora | no model | 3.0 | 0.0 | MissingExtraError: bitsandbytes |" in text


def test_the_probe_reaches_the_processes_a_stage_starts(tiny_model, tmp_path):
    probe = tmp_path / "probe.jsonl"
    with mock.patch.dict(os.environ):
        gpu.probe_children(tmp_path, probe)
        script = ("import torch; from transformers import AutoModelForCausalLM; "
                  f"AutoModelForCausalLM.from_pretrained({str(tiny_model)!r})(input_ids=torch.tensor([[1, 2]]))")
        subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    logged = [json.loads(line) for line in probe.read_text().splitlines()]
    assert {(p["model"], p["device"]) for p in logged} >= {("LlamaForCausalLM", "cpu")}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_without_a_gpu_the_check_says_so_in_one_line():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "gpu-check: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing was checked"]
