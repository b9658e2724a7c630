"""Configurations that would silently do something else on GPUs, refused before anything runs with what to do instead,
and the one placement decision of training that a later stage depends on (train in a child process).

Checked by `pipeline.run` for the whole run, and by the training stage for each model (`ssrtune train`).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from ssrtune.config.errors import ConfigError
from ssrtune.evaluation.ifeval import IFEVAL_MODULES, PURPOSE
from ssrtune.extras import check_extra
from ssrtune.inference.engine import ENGINES
from ssrtune.models import placement
from ssrtune.models.source import check_models_available

if TYPE_CHECKING:
    from ssrtune.config.run import RunConfig
    from ssrtune.config.fields import ModelConfig

log = logging.getLogger(__name__)

# Bytes per parameter that full fine-tuning holds on the GPU whatever the batch: the weights kept in float32 (the
# optimizer's master copy, trained under bf16 or fp16 autocast), their float32 gradients, and AdamW's two float32
# moments. Activations come on top, so this is a lower bound.
FULL_FINE_TUNING_BYTES = {"float32 weights (master copy)": 4, "float32 gradients": 4, "AdamW first moment": 4,
                          "AdamW second moment": 4}


class LauncherError(ConfigError):
    """ssrtune itself started by torchrun or accelerate launch."""


def check_not_launched() -> None:
    """Refuse to run stages in a process that torchrun or `accelerate launch` started: every rank would run the whole
    chain into the same run directory. ssrtune launches its training processes itself."""
    world, rank = int(os.environ.get("WORLD_SIZE", "1") or 1), int(os.environ.get("LOCAL_RANK", "0") or 0)
    if world > 1 or rank > 0:
        raise LauncherError(
            f"ssrtune was started by a distributed launcher (WORLD_SIZE={world}, LOCAL_RANK={rank}): every process "
            "would run the whole chain. Start ssrtune once, without torchrun / accelerate launch, and set "
            "train.num_processes (e.g. `ssrtune run CONFIG train.num_processes=auto`): it launches one training "
            "process per GPU itself")


def check_run(config: RunConfig) -> None:
    """Everything a whole run can be refused for before its first stage: the launcher, a model that can't be had
    (`model_source`), a benchmark's missing extra, each model's training settings on this machine, and the model's
    chat template (`chat_format.check_chat_template`)."""
    from ssrtune.data.chat_format import check_chat_template
    from ssrtune.models.loading import load_tokenizer

    check_not_launched()
    check_models_available(config)
    check_benchmark_extras(config)
    for entry in config.model_entries():
        check_training(config.model_copy(update={"train": entry.resolve(config.train)}))
    check_chat_template(load_tokenizer(config.model), config.model.name)


def check_benchmark_extras(config: RunConfig) -> None:
    """A benchmark scored by an extra's packages (ifeval), refused before any work when they are not installed, rather
    than after the model's answers."""
    retention = config.evaluate.retention
    if retention and retention.harness == "native" and "ifeval" in retention.benchmarks:
        for module in IFEVAL_MODULES:
            check_extra(module, "ifeval", PURPOSE)


def check_training(config: RunConfig) -> None:
    """Refuse training settings that would do something else than asked on this machine (`config.train` is the
    model's own train settings)."""
    train, machine = config.train, placement.hardware()
    processes = placement.process_count(train)
    if train.accelerate_config and processes == 1:
        raise ConfigError(f"train.accelerate_config {train.accelerate_config!r} is read by multi-process training "
                          "only, and train.num_processes is 1 here: set train.num_processes to the processes the "
                          "file plans (one per GPU), or drop accelerate_config to train in one process")
    device_map = config.model.device_map or ""
    if device_map.startswith("cuda:") and int(device_map.split(":")[1]) > 0:
        raise ConfigError(f"model.device_map {device_map!r} for training: the Trainer would train a model placed "
                          "off its own device as model-parallel. Leave device_map null and choose the GPU with "
                          f"CUDA_VISIBLE_DEVICES={device_map.split(':')[1]} (or train on every GPU with "
                          "train.num_processes: auto)")
    if train.machine_rank > 0:
        raise ConfigError(f"train.machine_rank {train.machine_rank}: ssrtune's commands run on machine 0 only (on "
                          "another machine they would redo the earlier stages in the shared run directory); the "
                          "other machines join the training through ssrtune.training.distributed.launch")
    here = processes // train.num_machines  # accelerate starts num_processes / num_machines on each machine
    if machine.gpus and here > len(machine.gpus):
        raise ConfigError(f"train.num_processes {processes}: {here} process(es) on each of {train.num_machines} "
                          f"machine(s), and this one has {len(machine.gpus)} visible GPU(s): a process without one "
                          "would train on the CPU beside NCCL ranks. Use one process per GPU: train.num_processes: "
                          f"auto (or at most {len(machine.gpus) * train.num_machines})")
    if train.full and placement.training_placement(config.model, train).device_type == "cuda":
        check_full_fine_tuning_fits(config.model, bool(train.accelerate_config))


def full_fine_tuning_gib(n_parameters: int) -> float:
    """GiB that full fine-tuning holds per process without sharding (`FULL_FINE_TUNING_BYTES`, activations aside)."""
    return n_parameters * sum(FULL_FINE_TUNING_BYTES.values()) / 2**30


def check_full_fine_tuning_fits(model: ModelConfig, sharded: bool) -> None:
    """Refuse a full fine-tune whose weights, gradients and AdamW states alone exceed the GPU's memory; only warn
    under an accelerate config, whose FSDP or DeepSpeed may shard or offload them."""
    gpu = min(placement.hardware().gpus, key=lambda g: g.memory_gib)
    n = parameter_count(model)
    need = full_fine_tuning_gib(n)
    if need <= gpu.memory_gib:
        return
    words = (f"train.full: a full fine-tune of {n / 1e9:.2f}B parameters holds at least {need:.1f} GiB per GPU "
             f"({sum(FULL_FINE_TUNING_BYTES.values())} bytes a parameter: "
             + ", ".join(f"{what} {size}" for what, size in FULL_FINE_TUNING_BYTES.items())
             + f"; activations on top), and GPU {gpu.index} ({gpu.name}) has {gpu.memory_gib:.1f} GiB")
    if sharded:
        log.warning("%s: the accelerate config must shard or offload them (FSDP, DeepSpeed ZeRO-3)", words)
        return
    raise ConfigError(f"{words}. Train LoRA (train.full: false) or QLoRA (train.quantization: 4bit), or shard the "
                      "fine-tune over GPUs (train.num_processes with an FSDP or DeepSpeed train.accelerate_config)")


def parameter_count(model: ModelConfig) -> int:
    """The model's parameters, counted on the meta device from its configuration (no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ssrtune.models.loading import resolve

    settings = AutoConfig.from_pretrained(resolve(model.name), revision=model.revision,
                                          trust_remote_code=model.trust_remote_code)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(settings, trust_remote_code=model.trust_remote_code).num_parameters()


def reserves_gpu_memory(config: RunConfig) -> bool:
    """Whether a stage of the run (generation, evaluation or an llm judge) starts an engine that claims a share of the
    GPU's memory when it starts (vLLM)."""
    engines = [config.generate.engine, config.evaluate.engine,
               *(judge.engine for _, judge in config.leaf_judges() if hasattr(judge, "engine"))]
    return any(ENGINES[engine].can.reserves_gpu_memory for engine in engines)


def train_in_child_process(config: RunConfig) -> bool:
    """Whether a one-process training must run in a child process: on a CUDA device, when a vLLM engine starts after
    it. Training in this process keeps its GPU memory (torch's cached blocks, the model and optimizer until they are
    collected), and vLLM refuses to start with less than `gpu_memory_utilization` of the GPU free (vllm#20305); a
    child's end gives back every byte."""
    return (reserves_gpu_memory(config)
            and placement.training_placement(config.model, config.train).device_type == "cuda")
