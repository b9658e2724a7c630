"""From the configuration to an LM: the one factory of every stage's model calls, and the identity of an engine
that the fingerprints of answers and scores hold. Every engine comes from the registry (`engine.ENGINES`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ssrtune.inference.engine import ENGINES, EngineSetup
from ssrtune.inference.lm import LM

if TYPE_CHECKING:
    from ssrtune.config.engine import EngineSettings
    from ssrtune.config.fields import EndpointConfig, ModelConfig, VllmConfig
    from ssrtune.config.run import RunConfig


def build_lm(engine: str, model: ModelConfig | None, *, batch_size: int = 16, endpoint: EndpointConfig | None = None,
             vllm: VllmConfig | None = None, adapter: Path | None = None) -> LM:
    """`model` (with `adapter`: the trained model in that folder) behind the engine registered as `engine`. Nothing
    is loaded until the first call."""
    return ENGINES[engine].build(EngineSetup(model, batch_size, endpoint, vllm, adapter))


def engine_identity(engine: str, model: ModelConfig | None, *, endpoint: EndpointConfig | None = None,
                    vllm: VllmConfig | None = None) -> list[str]:
    """What answers and scores depend on besides the model and the inputs: the engine, and the precision it runs in
    on this machine (`model.dtype: auto` decides differently on a GPU and a CPU), or the server's model name."""
    return ENGINES[engine].identity(EngineSetup(model, endpoint=endpoint, vllm=vllm))


def describe_engine(engine: str, model: ModelConfig | None, *, endpoint: EndpointConfig | None = None,
                    vllm: VllmConfig | None = None) -> str:
    """One line for `ssrtune doctor`: the engine, the model, and where and in which precision it would run."""
    return ENGINES[engine].describe(EngineSetup(model, endpoint=endpoint, vllm=vllm))


def stage_lm(config: RunConfig, settings: EngineSettings, adapter: Path | None = None) -> LM:
    """The run's model (or the trained one in `adapter`) behind a stage's engine settings (`config.generate`,
    `config.evaluate`)."""
    return build_lm(settings.engine, config.model, batch_size=settings.batch_size, endpoint=settings.endpoint,
                    vllm=config.vllm, adapter=adapter)


def stage_engine_identity(config: RunConfig, settings: EngineSettings) -> list[str]:
    return engine_identity(settings.engine, config.model, endpoint=settings.endpoint, vllm=config.vllm)
