"""bench/gpu.py's CPU parts: the model shapes, the fitted tokenizer, stage timing from artifacts, the table, the probe,
and the one-line exit without a GPU. The check itself needs a GPU."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssrtune.config import ModelConfig
from ssrtune.models import load_model, load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
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
    shape = {**gpu.SHAPES["smollm2-135m"], "num_hidden_layers": 2, "vocab_size": 512}
    folder = gpu.build_model(shape, tokenizer, tmp_path / "model", device="cpu")
    model = load_model(ModelConfig(name=str(folder)), dtype=torch.bfloat16)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 2
    assert model.config.hidden_size == 576 and model.config.rope_parameters["rope_theta"] == 100000.0
    assert load_tokenizer(ModelConfig(name=str(folder))).chat_template == tokenizer.chat_template


def test_stages_are_timed_by_their_artifacts(tmp_path):
    files = {"data/train.jsonl": 10, "generations.jsonl": 40, "judgments.jsonl": 41, "train/ssr.jsonl": 42,
             "models/ssr/checkpoint-2/adapter_model.safetensors": 60, "models/ssr/ssrtune_train.json": 70,
             "eval/base/task.json": 80, "data/ood.jsonl": 79, "eval/ssr/retention.json": 95, "report.md": 96}
    for name, seconds in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        os.utime(path, (1000 + seconds, 1000 + seconds))
    intervals = gpu.stage_intervals(tmp_path, ["ssr"], start=1000)
    assert [(stage, start - 1000, end - 1000) for stage, start, end in intervals] == [
        ("data", 0, 10), ("generate", 10, 40), ("judge", 40, 41), ("select ssr", 41, 42), ("train ssr", 42, 70),
        ("evaluate base", 70, 80), ("evaluate ssr", 80, 95), ("report", 95, 96)]


def test_a_stage_off_the_gpu_is_named_and_the_table_shows_each_stage():
    intervals = [("judge", 0, 1), ("generate", 1, 11), ("evaluate base", 11, 21)]
    samples = [(t, 80.0 if t < 11 else 0.0, 2048.0 + 100 * t) for t in range(21)]
    probes = [{"t": 5, "device": "cuda", "dtype": "torch.bfloat16"}, {"t": 15, "device": "cpu", "dtype": "torch.float32"}]
    rows = gpu.summarise(intervals, samples, probes, baseline_mib=1024.0)
    judge, generate, evaluate = rows
    assert judge["problems"] == [] and judge["devices"] == []  # a rule judge calls no model
    assert generate["problems"] == [] and generate["utilisation_max"] == 80.0
    assert generate["peak_memory_mib"] == 2048.0 + 100 * 11 - 1024.0 and generate["seconds"] == 10
    assert evaluate["problems"] == ["models ran on cpu", "GPU utilisation never reached 10%"]
    text = gpu.table("mistral-7b", rows, "NVIDIA H100")
    assert "| generate | 10.0 | 2.1 | 73 / 80 | cuda, bfloat16 | ok |" in text  # t=11 ends one, starts the next
    assert "| evaluate base | 10.0 | 3.0 | 0 / 0 | cpu, float32 | models ran on cpu; GPU utilisation never" in text


def test_the_probe_logs_where_each_model_runs(tiny_model, tmp_path):
    from transformers import PreTrainedModel

    model = load_model(ModelConfig(name=str(tiny_model)))
    try:
        gpu.install_probe(str(tmp_path / "probe.jsonl"))
        model(input_ids=torch.tensor([[1, 2, 3]]))
    finally:
        del PreTrainedModel.__call__  # back to torch.nn.Module's
    logged = [json.loads(line) for line in (tmp_path / "probe.jsonl").read_text().splitlines()]
    assert {(p["model"], p["device"], p["dtype"]) for p in logged} == {
        ("LlamaForCausalLM", "cpu", "torch.float32"), ("LlamaModel", "cpu", "torch.float32")}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_without_a_gpu_the_check_says_so_in_one_line():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "gpu-check: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing was checked"]
