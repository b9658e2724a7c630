"""From the configuration to an LM: the one factory of every stage's model calls, and the identity of an engine
that the fingerprints of answers and scores hold (the engine and the precision it computes in)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from ssrtune.extras import check_extra
from ssrtune.inference.child import ChildProcessLM
from ssrtune.inference.lm import LM
from ssrtune.models.placement import place
from ssrtune.config.fields import EndpointConfig, ModelConfig, VllmConfig

if TYPE_CHECKING:
    from ssrtune.config.run import RunConfig
    from ssrtune.config.fields import EngineSettings

ENGINES = ("transformers", "vllm", "openai")


def build_lm(engine: str, model: ModelConfig, *, batch_size: int = 16, endpoint: EndpointConfig | None = None,
             vllm: VllmConfig | None = None, adapter: Path | None = None) -> LM:
    """`model` (with `adapter`: the trained model in that folder) behind `engine`. Nothing is loaded until the first
    call. transformers: in this process, placed by `ssrtune.models.placement.place`; vllm: in a child process, ended by the
    LM's `close`; openai: the server's `endpoint.model`, or for a trained model the server's model named like its
    folder (e.g. `vllm serve BASE --enable-lora --lora-modules ssr=runs/NAME/models/ssr`)."""
    if engine == "transformers":
        from ssrtune.inference.local import TransformersLM

        return TransformersLM(model, adapter, batch_size)
    if engine == "vllm":
        from ssrtune.inference.vllm_engine import VllmLM

        check_extra("vllm", "vllm", "the vllm engine")  # here, rather than after starting a process
        return ChildProcessLM(functools.partial(VllmLM, model, vllm or VllmConfig(), adapter), "vllm",
                              VllmLM.chunk_size)
    if engine == "openai":
        from ssrtune.inference.server import OpenAILM

        if endpoint is None:
            raise ValueError("the openai engine needs an endpoint")
        return OpenAILM(endpoint if adapter is None else endpoint.model_copy(update={"model": Path(adapter).name}))
    raise ValueError(f"unknown engine {engine!r}; one of {', '.join(ENGINES)}")


def engine_identity(engine: str, model: ModelConfig, *, endpoint: EndpointConfig | None = None,
                    vllm: VllmConfig | None = None) -> list[str]:
    """What answers and scores depend on besides the model and the inputs: the engine, and the precision it runs in
    on this machine (`model.dtype: auto` decides differently on a GPU and a CPU), or the server's model name."""
    if engine == "openai":
        return [engine, endpoint.model if endpoint else ""]
    if engine == "vllm":
        from ssrtune.inference.vllm_engine import vllm_dtype

        return [engine, vllm_dtype(model, vllm or VllmConfig())]
    return [engine, *place(model).precision]


def describe_engine(engine: str, model: ModelConfig, *, endpoint: EndpointConfig | None = None,
                    vllm: VllmConfig | None = None) -> str:
    """One line for `ssrtune doctor`: the engine, the model, and where and in which precision it would run."""
    if engine == "openai":
        return f"openai: {endpoint.model if endpoint else '?'} at {endpoint.base_url if endpoint else '?'}"
    if engine == "vllm":
        settings = vllm or VllmConfig()
        return (f"vllm: {model.name}, {engine_identity(engine, model, vllm=settings)[1]}, tensor parallel "
                f"{settings.tensor_parallel_size}, {settings.gpu_memory_utilization:.0%} of GPU memory")
    return f"transformers: {model.name}, {place(model).describe()}"


def stage_lm(config: RunConfig, settings: EngineSettings, adapter: Path | None = None) -> LM:
    """The run's model (or the trained one in `adapter`) behind a stage's engine settings (`config.generate`,
    `config.evaluate`)."""
    return build_lm(settings.engine, config.model, batch_size=settings.batch_size, endpoint=settings.endpoint,
                    vllm=config.vllm, adapter=adapter)


def stage_engine_identity(config: RunConfig, settings: EngineSettings) -> list[str]:
    return engine_identity(settings.engine, config.model, endpoint=settings.endpoint, vllm=config.vllm)
