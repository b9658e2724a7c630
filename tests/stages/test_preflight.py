"""GPU configurations that would silently do something else, refused before anything runs (ssrtune.preflight), and
training in a child process where a later vLLM engine needs its GPU memory; checked with CUDA mocked, as
tests/unit/test_placement.py does."""

import contextlib
import json
import logging
from unittest import mock

import pytest

from ssrtune import preflight
from ssrtune.config.run import ConfigError, load_config
from ssrtune.models.placement import Gpu, Hardware
from ssrtune.stages.base import Run

H100 = Gpu(0, "NVIDIA H100 80GB HBM3", (9, 0), 79.2)
ONE_GPU, TWO_GPUS = Hardware(False, (H100,)), Hardware(False, (H100, Gpu(1, "NVIDIA H100 80GB HBM3", (9, 0), 79.2)))
CPU_ONLY = Hardware(False, ())


@contextlib.contextmanager
def on(machine: Hardware):
    """This machine's GPUs, as placement sees them and as `num_processes: auto` counts them."""
    with mock.patch("ssrtune.models.placement.hardware", return_value=machine), \
            mock.patch("torch.cuda.device_count", return_value=len(machine.gpus)):
        yield


def config(*overrides, model=None):
    return load_config(None, [*([f"model.name={model}"] if model else []), *overrides])


def test_an_accelerate_config_with_one_process_is_refused():
    with on(CPU_ONLY), pytest.raises(ConfigError, match=r"accelerate_config 'fsdp.yaml' is read by multi-process "
                                                        r"training only, and train.num_processes is 1"):
        preflight.check_training(config("train.accelerate_config=fsdp.yaml"))
    with on(ONE_GPU), pytest.raises(ConfigError, match="num_processes is 1"):  # auto on one GPU is one process
        preflight.check_training(config("train.accelerate_config=fsdp.yaml", "train.num_processes=auto"))
    with on(TWO_GPUS):
        preflight.check_training(config("train.accelerate_config=fsdp.yaml", "train.num_processes=auto"))


def test_training_on_another_gpu_than_its_own_is_refused():
    with on(TWO_GPUS), pytest.raises(ConfigError, match=r"model.device_map 'cuda:1' for training.*"
                                                        r"CUDA_VISIBLE_DEVICES=1"):
        preflight.check_training(config("model.device_map=cuda:1"))
    with on(TWO_GPUS):
        preflight.check_training(config("model.device_map=cuda:0"))


def test_more_processes_than_gpus_is_refused():
    with on(TWO_GPUS), pytest.raises(ConfigError, match=r"train.num_processes 4: 4 process\(es\) on each of 1 "
                                                        r"machine\(s\), and this one has 2 visible GPU.*"
                                                        r"train.num_processes: auto \(or at most 2\)"):
        preflight.check_training(config("train.num_processes=4"))
    machines = ["train.num_machines=2", "train.main_process_ip=10.0.0.5", "train.main_process_port=29500"]
    with on(TWO_GPUS):  # accelerate's num_processes counts every machine's: 2 here, 2 on the other
        preflight.check_training(config("train.num_processes=4", *machines))
        preflight.check_training(config("train.num_processes=auto", *machines))
        assert preflight.placement.process_count(config("train.num_processes=auto", *machines).train) == 4
    with on(TWO_GPUS), pytest.raises(ConfigError, match=r"at most 4\)"):
        preflight.check_training(config("train.num_processes=6", "train.batch_size=6", *machines))
    with on(CPU_ONLY):  # without GPUs, gloo runs any number of CPU processes
        preflight.check_training(config("train.num_processes=4"))


def test_a_stage_command_on_a_machine_other_than_machine_0_is_refused():
    with on(CPU_ONLY), pytest.raises(ConfigError, match=r"train.machine_rank 1: ssrtune's commands run on machine 0 "
                                                        r"only.*ssrtune.training.distributed.launch"):
        preflight.check_training(config("train.num_machines=2", "train.machine_rank=1",
                                        "train.main_process_ip=10.0.0.5", "train.main_process_port=29500",
                                        "train.num_processes=2"))


@pytest.mark.parametrize("environment", [{"WORLD_SIZE": "2", "LOCAL_RANK": "0"}, {"LOCAL_RANK": "1"}])
def test_ssrtune_started_by_a_launcher_runs_nothing(environment, monkeypatch, tmp_path):
    from ssrtune import pipeline

    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    run = config(f"run_dir={tmp_path / 'run'}")
    with pytest.raises(preflight.LauncherError, match=r"started by a distributed launcher.*train.num_processes"):
        pipeline.run(run)
    with pytest.raises(preflight.LauncherError):
        Run(run)  # any stage command
    assert not (tmp_path / "run").exists()


@pytest.fixture()
def mistral_7b(tmp_path):
    """Mistral-7B's configuration (no weights: the parameters are counted on the meta device)."""
    folder = tmp_path / "mistral-7b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "vocab_size": 32768, "max_position_embeddings": 32768, "tie_word_embeddings": False}))
    return folder


def test_a_full_fine_tune_that_cannot_fit_the_gpu_is_refused(mistral_7b, caplog):
    assert preflight.parameter_count(config(model=mistral_7b).model) == 7_248_023_552
    with on(ONE_GPU), pytest.raises(ConfigError, match=r"full fine-tune of 7.25B parameters holds at least 108.0 GiB "
                                                       r"per GPU \(16 bytes a parameter.*GPU 0 \(NVIDIA H100 80GB "
                                                       r"HBM3\) has 79.2 GiB\. Train LoRA"):
        preflight.check_training(config("train.full=true", model=mistral_7b))
    with on(ONE_GPU):
        preflight.check_training(config(model=mistral_7b))  # LoRA: the frozen weights alone
        preflight.check_training(config("train.full=true", "model.device_map=cpu", model=mistral_7b))  # host memory
    with on(TWO_GPUS), caplog.at_level(logging.WARNING, logger="ssrtune.preflight"):
        preflight.check_training(config("train.full=true", "train.num_processes=2",
                                        "train.accelerate_config=fsdp.yaml", model=mistral_7b))
    assert "must shard or offload" in caplog.text  # FSDP / DeepSpeed may: a warning, not a refusal


def test_training_runs_in_a_child_process_when_a_later_vllm_engine_needs_the_gpu():
    with on(ONE_GPU):
        assert preflight.train_in_child_process(config("evaluate.engine=vllm"))
        assert preflight.train_in_child_process(config("evaluate.judge={kind: llm, engine: vllm}"))
        assert preflight.train_in_child_process(config(
            "evaluate.judge={kind: any, judges: [{kind: contains}, {kind: llm, engine: vllm}]}"))
        assert not preflight.train_in_child_process(config())  # transformers after transformers: this process
    with on(CPU_ONLY):
        assert not preflight.train_in_child_process(config("evaluate.engine=vllm"))


def test_a_one_process_training_in_a_child_process_trains_there(tiny_model, tmp_path, monkeypatch):
    from ssrtune.training import distributed
    from ssrtune.storage.artifacts import write_jsonl
    from tests.training_rows import rows

    write_jsonl(tmp_path / "sft.jsonl", [{**row, "source": "gold"} for row in rows()])
    run = config("model.dtype=float32", "train.batch_size=3", "train.epochs=1", model=tiny_model)
    command = distributed.launch_command(run, tmp_path / "sft.jsonl", tmp_path / "sft", tmp_path / "result.json")
    assert command[1:3] == ["-m", "ssrtune.training.distributed"]  # a plain child: no accelerate launcher for one process
    monkeypatch.setattr(distributed, "train_in_child_process", lambda config: True)
    monkeypatch.setattr(distributed, "train_here", lambda *args: pytest.fail("trained in this process"))
    result = distributed.train_method(run, tmp_path / "sft.jsonl", tmp_path / "sft")
    assert result["steps"] == 2 and (tmp_path / "sft" / "adapter_model.safetensors").exists()


def test_the_training_stage_checks_before_it_trains(tiny_run, tmp_path):
    from ssrtune.stages.base import trained_models
    from ssrtune.stages.train import Train
    from tests.tiny_run import run_stage

    run = tiny_run.config("methods=[sft]", "train.accelerate_config=fsdp.yaml")
    with on(CPU_ONLY), pytest.raises(ConfigError, match="accelerate_config 'fsdp.yaml' is read by multi-process"):
        run_stage(run, Train(trained_models(run)[0]))
    assert not (tmp_path / "run" / "models" / "sft").exists()  # nothing trained, nothing written
