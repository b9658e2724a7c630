"""The built-in engines, registered with what each can do: transformers (`local`), vllm (`vllm_engine`, in a child
process) and openai (`server`). Each imports its back-end (torch, vLLM, the server client) only when it builds an
LM or works out its precision, so the configuration checks names against `engine.ENGINES` cheaply."""

from __future__ import annotations

import functools
from pathlib import Path

from ssrtune.inference.engine import ENGINES, Capabilities, Engine, EngineSetup
from ssrtune.inference.lm import LM


@ENGINES.register("transformers")
class TransformersEngine(Engine):
    """In this process: the CPU, one GPU, or one model sharded over several; a trained LoRA adapter merged in."""

    can = Capabilities(loglikelihood=True, next_token_distributions=True, harness=True)

    @classmethod
    def build(cls, setup: EngineSetup) -> LM:
        from ssrtune.inference.local import TransformersLM

        return TransformersLM(setup.model, setup.adapter, setup.batch_size)

    @classmethod
    def identity(cls, setup: EngineSetup) -> list[str]:
        from ssrtune.models.placement import place

        return [cls.name, *place(setup.model).precision]

    @classmethod
    def describe(cls, setup: EngineSetup) -> str:
        from ssrtune.models.placement import place

        return f"{cls.name}: {setup.model.name}, {place(setup.model).describe()}"


@ENGINES.register("vllm")
class VllmEngine(Engine):
    """vLLM's offline engine on GPUs, in a child process whose end releases its GPU memory; a trained LoRA adapter is
    served without merging."""

    can = Capabilities(loglikelihood=True, reserves_gpu_memory=True)

    @classmethod
    def build(cls, setup: EngineSetup) -> LM:
        from ssrtune.config.fields import VllmConfig
        from ssrtune.extras import check_extra
        from ssrtune.inference.child import ChildProcessLM
        from ssrtune.inference.vllm_engine import VllmLM

        check_extra("vllm", "vllm", "the vllm engine")  # here, rather than after starting a process
        return ChildProcessLM(functools.partial(VllmLM, setup.model, setup.vllm or VllmConfig(), setup.adapter),
                              cls.name, VllmLM.chunk_size)

    @classmethod
    def identity(cls, setup: EngineSetup) -> list[str]:
        from ssrtune.config.fields import VllmConfig
        from ssrtune.inference.vllm_engine import vllm_dtype

        return [cls.name, vllm_dtype(setup.model, setup.vllm or VllmConfig())]

    @classmethod
    def describe(cls, setup: EngineSetup) -> str:
        from ssrtune.config.fields import VllmConfig

        settings = setup.vllm or VllmConfig()
        return (f"{cls.name}: {setup.model.name}, {cls.identity(setup)[1]}, tensor parallel "
                f"{settings.tensor_parallel_size}, {settings.gpu_memory_utilization:.0%} of GPU memory")


@ENGINES.register("openai")
class OpenAIEngine(Engine):
    """Any OpenAI-compatible chat-completions server: the server's `endpoint.model`, or for a trained model the
    server's model named like its folder (e.g. `vllm serve BASE --enable-lora --lora-modules
    ssr=runs/NAME/models/ssr`)."""

    can = Capabilities(endpoint=True, tokenizes_prompts=True)

    @classmethod
    def build(cls, setup: EngineSetup) -> LM:
        from ssrtune.inference.server import OpenAILM

        if setup.endpoint is None:
            raise ValueError("the openai engine needs an endpoint")
        endpoint = setup.endpoint
        return OpenAILM(endpoint if setup.adapter is None else
                        endpoint.model_copy(update={"model": Path(setup.adapter).name}))

    @classmethod
    def identity(cls, setup: EngineSetup) -> list[str]:
        return [cls.name, setup.endpoint.model if setup.endpoint else ""]

    @classmethod
    def describe(cls, setup: EngineSetup) -> str:
        endpoint = setup.endpoint
        return f"{cls.name}: {endpoint.model if endpoint else '?'} at {endpoint.base_url if endpoint else '?'}"
