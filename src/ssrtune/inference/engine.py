"""The engines a configuration can name: each registers itself in `ENGINES` with what it can do, how its LM is built
and what its answers depend on, in the manner of lm-evaluation-harness's `@register_model`.

An engine is a subclass of `Engine` decorated with `@ENGINES.register(name)`; `factory.build_lm` builds it from
`EngineSetup`, and the configuration checks an `engine:` name against the registry and refuses a suite the engine's
`Capabilities` can't serve. The built-in engines are declared in `inference.engines`, which the registry imports on
first lookup; their declarations import nothing heavy (torch, vllm, openai) until an LM is built.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ssrtune.registry import Registry

if TYPE_CHECKING:
    from ssrtune.config.fields import EndpointConfig, ModelConfig, VllmConfig
    from ssrtune.inference.lm import LM


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do besides greedy generation (every engine generates)."""

    loglikelihood: bool = False  # `LM.loglikelihood`: retention benchmarks, the llm judge's verdict scores
    next_token_distributions: bool = False  # `LM.token_logprobs` and `LM.answer_tokens`: the KL from the base model
    harness: bool = False  # `LM.harness_model`: a model lm-evaluation-harness runs its tasks on
    endpoint: bool = False  # talks to the server the stage's `endpoint` settings name (and needs them)
    tokenizes_prompts: bool = False  # tokenizes with its own tokenizer and limit: prompts are sent whole, not cut
    reserves_gpu_memory: bool = False  # claims a share of the GPU's memory when it starts (vLLM)


@dataclass(frozen=True)
class EngineSetup:
    """What a stage hands an engine: the model (with `adapter`, the trained one in that folder), the prompts per
    batch, and the settings of the engines that take them (the server of an `endpoint` engine, vLLM's)."""

    model: ModelConfig | None
    batch_size: int = 16
    endpoint: EndpointConfig | None = None
    vllm: VllmConfig | None = None
    adapter: Path | None = None


class Engine(ABC):
    """A registered engine: its capabilities and the LM it builds."""

    name: ClassVar[str]  # set by `ENGINES.register`
    can: ClassVar[Capabilities] = Capabilities()

    @classmethod
    @abstractmethod
    def build(cls, setup: EngineSetup) -> LM:
        """The LM of `setup`, which loads nothing until its first call (a rerun with every answer cached needs no
        model, server or key)."""

    @classmethod
    def identity(cls, setup: EngineSetup) -> list[str]:
        """What answers and scores depend on besides the model and the inputs (held by their fingerprints): the
        engine, and what decides its numbers (the precision it computes in, a server's model name)."""
        return [cls.name]

    @classmethod
    def describe(cls, setup: EngineSetup) -> str:
        """One line for `ssrtune doctor`: the engine, the model, and where and how it would run."""
        return f"{cls.name}: {setup.model.name if setup.model else '?'}"


class _EngineRegistry(Registry[type[Engine]]):
    def add(self, name: str, entry: type[Engine]) -> type[Engine]:
        super().add(name, entry)
        entry.name = name
        return entry

    def that_can(self, capability: str) -> str:
        """The engines with `capability` (a field of `Capabilities`), for error messages: "transformers or vllm"."""
        return " or ".join(name for name, engine in self.items() if getattr(engine.can, capability))


ENGINES = _EngineRegistry("engine", "ssrtune.inference.engines")
