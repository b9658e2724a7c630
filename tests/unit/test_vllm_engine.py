"""The vllm engine through a fake vLLM (tests/fake_vllm records every call, with its process id): the engine
settings, the same prompt tokens as the transformers engine, greedy sampling, LoRA adapters served without merging,
log-likelihoods from prompt log-probs, and the child process whose end frees the GPU memory with each stage."""

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest

from ssrtune.config.run import load_config
from ssrtune.inference.lm import LM
from ssrtune.inference.generation import prompt_text
from ssrtune.inference.scoring import encode_request
from ssrtune.models.loading import load_tokenizer
from ssrtune.models.placement import Gpu, Hardware
from ssrtune.config.fields import ModelConfig, VllmConfig
from ssrtune.stages.base import Run
from ssrtune.stages.evaluate import Evaluate
from ssrtune.stages.generate import Generate
from tests.paths import TESTS

FAKE = TESTS / "fake_vllm"
ONE_A100 = Hardware(False, (Gpu(0, "A100", (8, 0), 80.0),))


def _drop_fake_modules() -> None:
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture()
def vllm_calls(tmp_path, monkeypatch):
    """Put the fake vLLM on sys.path (inherited by spawned children); returns a function reading its calls."""
    log = tmp_path / "vllm-calls.jsonl"
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    monkeypatch.syspath_prepend(str(FAKE))
    _drop_fake_modules()
    yield lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    _drop_fake_modules()


def chats():
    return [[{"role": "user", "content": "What colour is the sky?"}],
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who wrote the letter?"}]]


def test_engine_settings_prompt_tokens_and_greedy_sampling(vllm_calls, tiny_model):
    from ssrtune.inference.vllm_engine import VllmLM

    model = ModelConfig(name=str(tiny_model), dtype="float32")
    settings = VllmConfig(tensor_parallel_size=2, gpu_memory_utilization=0.5, max_model_len=512, max_num_seqs=8,
                          enforce_eager=True)
    lm = VllmLM(model, settings)
    answers = lm.generate(chats() + ["raw text, continued as it is"], 7, stop=["\n\n"])
    engine, call = vllm_calls()
    assert engine["model"] == str(tiny_model) and engine["settings"] == {
        "tokenizer": str(tiny_model), "revision": None, "trust_remote_code": False, "dtype": "float32",
        "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "enforce_eager": True, "max_model_len": 512,
        "max_num_seqs": 8}
    tokenizer = load_tokenizer(model)
    expected = [tokenizer(prompt_text(tokenizer, p), add_special_tokens=False)["input_ids"]
                for p in chats() + ["raw text, continued as it is"]]
    assert call["prompts"] == expected  # the tokens the transformers engine would see
    assert call["params"] == {"temperature": 0.0, "max_tokens": 7, "stop": ["\n\n"], "prompt_logprobs": None}
    assert call["lora"] is None and answers == [f" answer to {len(ids)} tokens" for ids in expected]


def test_auto_precision_is_decided_for_the_gpus(vllm_calls, tiny_model):
    from ssrtune.inference.vllm_engine import VllmLM

    with mock.patch("ssrtune.models.placement.hardware", return_value=ONE_A100):
        VllmLM(ModelConfig(name=str(tiny_model)), VllmConfig())
    with mock.patch("ssrtune.models.placement.hardware", return_value=Hardware(False, (Gpu(0, "T4", (7, 5), 16.0),))):
        VllmLM(ModelConfig(name=str(tiny_model)), VllmConfig())
        VllmLM(ModelConfig(name=str(tiny_model)), VllmConfig(dtype="float32"))  # vllm.dtype overrides
    assert [c["settings"]["dtype"] for c in vllm_calls()] == ["bfloat16", "float16", "float32"]


def test_a_lora_adapter_is_served_unmerged_and_full_weights_as_the_model(vllm_calls, tiny_model, tmp_path):
    from ssrtune.inference.vllm_engine import VllmLM

    adapter = tmp_path / "models" / "ssr"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 24, "peft_type": "LORA"}))
    full = tmp_path / "models" / "sft"
    full.mkdir()
    with mock.patch("ssrtune.models.placement.hardware", return_value=ONE_A100):
        VllmLM(ModelConfig(name=str(tiny_model)), VllmConfig(), adapter).generate(chats(), 4)
        VllmLM(ModelConfig(name=str(tiny_model)), VllmConfig(), full).generate(chats(), 4)
    lora_engine, lora_call, full_engine, full_call = vllm_calls()
    assert lora_engine["model"] == str(tiny_model)  # the base model, with the adapter beside it
    assert {k: lora_engine["settings"][k] for k in ("enable_lora", "max_loras", "max_lora_rank")} == {
        "enable_lora": True, "max_loras": 1, "max_lora_rank": 32}  # the smallest vLLM rank holding r=24
    assert lora_call["lora"] == ["ssr", 1, str(adapter)]
    assert full_engine["model"] == str(full) and "enable_lora" not in full_engine["settings"]
    assert full_call["lora"] is None


def test_loglikelihoods_come_from_the_prompt_logprobs(vllm_calls, tiny_model):
    from vllm import prompt_logprob

    from ssrtune.inference.vllm_engine import VllmLM

    lm = VllmLM(ModelConfig(name=str(tiny_model), dtype="float32"), VllmConfig())
    requests = [("The sky is ", "blue"), ("Who wrote", " the letter?"), (chats()[0], "Yes"), ("Who wrote it?", " Anna")]
    got = lm.loglikelihood(requests)
    [_, call] = vllm_calls()
    assert call["params"] == {"temperature": 0.0, "max_tokens": 1, "stop": None, "prompt_logprobs": 1}
    tokenizer = lm.tokenizer
    for (context, continuation), sent, (ll, greedy) in zip(requests, call["prompts"], got):
        ctx, cont = encode_request(tokenizer, prompt_text(tokenizer, context), continuation)
        assert sent == ctx + cont
        assert ll == pytest.approx(sum(prompt_logprob(t).logprob for t in cont))
        assert greedy == all(prompt_logprob(t).rank == 1 for t in cont)
    assert {greedy for _, greedy in got} == {True, False}  # both cases met


def test_stages_run_vllm_in_a_child_process_that_ends_with_the_stage(vllm_calls, tiny_run, tmp_path):
    config = tiny_run.config("generate.engine=vllm", "generate.max_new_tokens=5", "evaluate.engine=vllm",
                             "evaluate.max_new_tokens=6", "vllm.gpu_memory_utilization=0.6")
    runner = Run(config)
    generations = runner(Generate())
    results = runner(Evaluate())
    assert len(generations) == 6 and all(g["response"].startswith("answer to") for g in generations.values())
    assert results["task"]["n"] == 6
    calls = vllm_calls()
    engines = [c for c in calls if c["event"] == "LLM"]
    assert len(engines) == 2 and {e["settings"]["gpu_memory_utilization"] for e in engines} == {0.6}
    assert [c["params"]["max_tokens"] for c in calls if c["event"] == "generate"] == [5, 6]
    pids = {c["pid"] for c in calls}
    assert len(pids) == 2 and os.getpid() not in pids  # one child per stage, none of it in this process
    for pid in pids:  # each ended with its stage, and with it the memory it held
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_an_llm_judge_can_run_on_vllm(vllm_calls):
    from ssrtune.inference.child import ChildProcessLM
    from ssrtune.judges.factory import build_judge
    from ssrtune.config.judges import VllmLLMJudgeConfig

    config = load_config(None, ["judge={kind: llm, engine: vllm, batch_size: 32, vllm: {max_num_seqs: 64}}"])
    assert isinstance(config.judge, VllmLLMJudgeConfig) and config.judge.vllm.max_num_seqs == 64
    with build_judge(config.judge) as judge:
        assert isinstance(judge.lm, ChildProcessLM) and judge.lm.engine == "vllm" and judge.batch_size == 32
        assert judge.lm.pid is None  # nothing started until the first verdict


def test_an_llm_judge_on_vllm_starts_only_once_the_evaluated_models_engine_is_gone(vllm_calls, tiny_run, tmp_path,
                                                                                   monkeypatch):
    """vLLM takes most of the GPU's memory: the judge's engine would not start beside the evaluated model's. The
    model answers every suite, its child process ends, then the judge decides them all."""
    from ssrtune.inference.child import ChildProcessLM

    started: list[ChildProcessLM] = []
    start = ChildProcessLM._start

    def alone(lm):
        assert not [other.engine for other in started if other.pid is not None], "a vLLM engine was still loaded"
        started.append(lm)
        start(lm)

    monkeypatch.setattr(ChildProcessLM, "_start", alone)
    config = tiny_run.config(
        "evaluate.engine=vllm", "evaluate.max_new_tokens=4",
        f"evaluate.judge={{kind: llm, engine: vllm, model: {{name: {tiny_run.model}}}}}",
        f"evaluate.datasets=[{{name: mine, file: {tiny_run.records}}}]")
    results = Run(config)(Evaluate())
    assert results["task"]["n"] == 6 and results["mine"]["n"] == 6
    assert len(started) == 2  # the evaluated model once for both suites, then the judge once for both


class EngineWithWorkers(LM):
    """An engine that starts a process of its own and leaves it running, as vLLM's engine core and workers can."""

    engine = "fake"

    def __init__(self, pid_file: str):
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        Path(pid_file).write_text(str(worker.pid))

    def generate(self, prompts, max_new_tokens, stop=(), **options):
        return ["answer"] * len(prompts)


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process `pid` ended: no such process, or a zombie that no one reaps (Linux shows it in /proc)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
@pytest.mark.parametrize("ending", ["closed", "killed"])
def test_the_engines_own_processes_end_with_its_child(tmp_path, ending):
    from ssrtune.inference.child import ChildProcessLM

    pid_file = tmp_path / "worker.pid"
    lm = ChildProcessLM(functools.partial(EngineWithWorkers, str(pid_file)), "fake", 16)
    assert lm.generate(["q"], 4) == ["answer"]
    worker = int(pid_file.read_text())
    try:
        if ending == "closed":
            lm.close()
        else:  # as the out-of-memory killer would
            os.kill(lm.pid, signal.SIGKILL)
            with pytest.raises(RuntimeError, match="ended unexpectedly"):
                lm.generate(["q"], 4)
        assert gone(worker)
    finally:  # a failed run leaves no sleeping worker behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)
