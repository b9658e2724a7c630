"""Which engine answers a stage's prompts (generation, evaluation): a name checked against the engine registry when
the configuration is read, and the server of an engine that talks to one. The registry's module imports no engine:
the names are filled in by `ssrtune.inference.engines` on first lookup."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, model_validator

from ssrtune.config.fields import EndpointConfig, Strict
from ssrtune.inference.engine import ENGINES


def registered_engine(name: str) -> str:
    """`name` if an engine is registered under it; else an error listing the registered ones."""
    return ENGINES.check(name)


class EngineSettings(Strict):
    """Which engine answers prompts (ssrtune.inference.factory.build_lm); the model's placement and precision are
    the model's own settings (`model.dtype`, `model.device_map`)."""

    engine: Annotated[str, AfterValidator(registered_engine)] = Field(
        "transformers", description="A registered engine (ssrtune.inference.engine.ENGINES): transformers (in this "
                                    "process: CPU, one GPU or one model sharded over GPUs), vllm (vLLM on GPUs; the "
                                    "run's `vllm` settings) or openai (any OpenAI-compatible server).")
    endpoint: EndpointConfig | None = Field(None, description="The server of an engine that talks to one (openai).")
    batch_size: int = Field(16, gt=0, description="transformers: prompts per batch.")
    REMOVED: ClassVar[dict[str, str]] = {
        "bf16": "model.dtype (auto | float32 | bfloat16 | float16: one precision for every stage of the model)",
        "tensor_parallel_size": "vllm.tensor_parallel_size (the run's vllm settings, shared by every stage)",
    }

    @model_validator(mode="after")
    def _endpoint_for_a_server(self) -> EngineSettings:
        needs_endpoint = ENGINES[self.engine].can.endpoint
        if needs_endpoint and self.endpoint is None:
            raise ValueError(f"`endpoint` is required by engine `{self.engine}`")
        if not needs_endpoint and self.endpoint is not None:
            raise ValueError(f"`endpoint` is only for an engine that talks to a server "
                             f"({ENGINES.that_can('endpoint')}), not `{self.engine}`")
        return self
