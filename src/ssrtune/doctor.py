"""`ssrtune doctor [CONFIG]`: the first thing to paste into a bug report. The machine (CPU, its flags and native bf16,
GPUs and their memory), the versions of ssrtune's dependencies and of its installed extras, the cache folders, and
with a configuration the engine, device and precision each stage would use -- from the same decisions the stages
take (`placement.place`, `inference.factory`), so what it prints is what a run does."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

import torch

from ssrtune import embedded
from ssrtune.config.run import RunConfig
from ssrtune.config.judges import CombinedJudgeConfig, EndpointLLMJudgeConfig, JudgeConfig, LLMJudgeConfig, describe
from ssrtune.models.source import ModelUnavailable, configured_models, model_source
from ssrtune.models.loading import cache_dir
from ssrtune.models.placement import PlacementError, hardware, process_count, training_placement

CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
CORE = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "safetensors", "pydantic", "gguf")


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_description() -> tuple[str, list[str]]:
    """The CPU's model name and which of CPU_FLAGS it has (from /proc/cpuinfo on Linux)."""
    name, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return name, [flag for flag in CPU_FLAGS if flag in flags]


def machine_lines() -> list[str]:
    machine = hardware()
    name, flags = cpu_description()
    lines = [f"python      {sys.version.split()[0]} on {platform.platform()}",
             f"cpu         {name}; {os.cpu_count()} logical cores, torch uses {torch.get_num_threads()} threads",
             f"cpu flags   {' '.join(flags) or 'none of ' + ', '.join(CPU_FLAGS)} (torch's kernels: "
             f"{torch.backends.cpu.get_cpu_capability()})",
             f"cpu bf16    {'native' if machine.cpu_native_bf16 else 'not native (emulated: slower than float32)'}",
             f"cuda        {torch.version.cuda or torch.version.hip or 'none in this torch build'}"]
    if not machine.gpus:
        lines.append("gpus        none visible")
    for gpu in machine.gpus:
        lines.append(f"gpu {gpu.index}       {gpu.name}, {gpu.memory_gib:.1f} GiB, compute capability "
                     f"{gpu.capability[0]}.{gpu.capability[1]}, bf16 {'native' if gpu.native_bf16 else 'not native'}")
    return lines


def extras() -> dict[str, list[str]]:
    """ssrtune's extras (from its installed metadata) -> the distributions each installs, without the test extra."""
    from packaging.requirements import Requirement

    out: dict[str, list[str]] = {}
    for text in importlib.metadata.requires("ssrtune") or []:
        requirement = Requirement(text)
        marker = str(requirement.marker or "")
        if "extra ==" in marker:
            extra = marker.split("extra ==")[1].strip().strip("'\"")
            if extra != "test":
                out.setdefault(extra, []).append(requirement.name)
    return out


def package_lines() -> list[str]:
    lines = [f"ssrtune     {version('ssrtune')}",
             "packages    " + ", ".join(f"{name} {version(name)}" for name in CORE),
             "embedded    " + ", ".join(f"{name} {version(name)}" for name, _ in embedded.PACKAGES.values())
             + (f" (to install them: {embedded.INSTALL_COMMAND})" if embedded.missing() else "")]
    for extra, names in sorted(extras().items()):
        lines.append(f"extra       {extra}: " + ", ".join(f"{name} {version(name)}" for name in names))
    hub = os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    converted = sorted(p.name for p in (cache_dir() / "models").glob("*") if p.is_dir())
    lines.append(f"cache       {cache_dir()} ({'SSRTUNE_CACHE' if 'SSRTUNE_CACHE' in os.environ else 'default'}; "
                 f"converted models: {', '.join(converted) or 'none'})")
    lines.append(f"hf cache    {hub}")
    return lines


def _engine_line(engine: str, model, endpoint=None, vllm=None) -> str:
    from ssrtune.inference.factory import describe_engine

    try:
        return describe_engine(engine, model, endpoint=endpoint, vllm=vllm)
    except PlacementError as err:
        return f"error: {err}"


def row(name: str, text: str) -> str:
    """One line of the stage table: the name in a column of its own, at least two spaces before the text (a model
    named `self_only-s0` makes a long stage name)."""
    return f"{name:<20}  {text}"


def _judge_lines(stage: str, judge: JudgeConfig) -> list[str]:
    """The judge's summary, then the engine line of every llm judge in it."""
    lines = [row(stage, describe(judge))]
    for leaf in judge.judges if isinstance(judge, CombinedJudgeConfig) else [judge]:
        if isinstance(leaf, CombinedJudgeConfig):
            lines += _judge_lines(stage, leaf)[1:]
        elif isinstance(leaf, EndpointLLMJudgeConfig):
            lines.append(f"{'':<22}{_engine_line(leaf.engine, None, endpoint=leaf.endpoint)}")
        elif isinstance(leaf, LLMJudgeConfig):
            lines.append(f"{'':<22}{_engine_line(leaf.engine, leaf.model, vllm=getattr(leaf, 'vllm', None))}")
    return lines


def model_lines(config: RunConfig) -> list[str]:
    """Where each model the run loads comes from, or why it can't be had (what `ssrtune run` would refuse)."""
    lines = []
    for where, model in configured_models(config):
        try:
            source = model_source(model)
        except ModelUnavailable as err:
            source = f"error: {err}"
        lines.append(row(where, f"{model.name}: {source}"))
    return lines


def stage_lines(config: RunConfig) -> list[str]:
    """Per stage of the run's plan, as `ssrtune run` would run them: the engine, the model, and the device and
    precision it would run in on this machine; each judge."""
    from ssrtune.pipeline import plan  # the stages: only when a configuration is described
    from ssrtune.stages.base import plan_closure, without_parts
    from ssrtune.stages.suites import judged_suites, suite_judge

    lines, stages = [], plan(config)
    for stage in without_parts(plan_closure(stages, config), stages):  # a model's evaluation, not each suite
        if stage.name in ("generate", "restate", "evaluate"):
            settings = config.evaluate if stage.name == "evaluate" else config.generate
            lines.append(row(stage.key, _engine_line(settings.engine, config.model, settings.endpoint, config.vllm)))
        elif stage.name == "judge":
            lines += _judge_lines(stage.key, config.judge)
        elif stage.name == "train":
            train = stage.model.train_settings(config)
            kind = "full fine-tuning" if train.full else "QLoRA" if train.quantization else f"LoRA r{train.lora_r}"
            try:
                placement = training_placement(config.model, train).describe()
            except PlacementError as err:
                placement = f"error: {err}"
            lines.append(row(stage.key, f"{kind}, {placement}, {process_count(train)} process(es)"))
        if stage.key == "evaluate/base":  # the evaluation's judges, the same for every model
            for suite in judged_suites(config):
                lines += _judge_lines(f"evaluate ({suite})", suite_judge(config, suite)[0])
    return lines


def report(config: RunConfig | None = None, source: str | None = None) -> str:
    lines = machine_lines() + package_lines()
    if config is not None:
        lines += ["", f"stages of {source or 'the configuration'} (run directory {config.path}):", *model_lines(config),
                  *stage_lines(config)]
    return "\n".join(lines)
