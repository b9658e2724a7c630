"""The configuration pieces shared by the run configuration and the judge configurations: the strict base every
section builds on, a model, and an OpenAI-compatible server."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    # Unknown keys are errors: a typo in a config must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Strict):
    """A causal language model with a chat template."""

    name: str = Field("smollm2-135m-instruct", description="Built-in name, Hub id, local folder or .gguf file.")
    revision: str | None = Field(None, description="A Hub revision (branch, tag or commit); null = the default "
                                                   "branch. Ignored for local folders and built-in names.")
    trust_remote_code: bool = Field(False, description="Run the model repository's own Python code (only for a "
                                                       "repository you trust).")
    max_context: int | None = Field(
        None, gt=16, description="Longest prompt plus answer, in tokens; null = the model's max_position_embeddings. "
                                 "Longer documents are cut (docs/RELIABILITY.md).")


class EndpointConfig(Strict):
    """An OpenAI-compatible chat-completions server (OpenAI, vLLM serve, llama.cpp server, TGI)."""

    base_url: str = Field(description="The API root, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="The model name the server knows.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="NAME of the environment variable holding the key; null for a server without one."
    )
    max_concurrency: int = Field(8, gt=0, description="Requests in flight at once.")
    timeout_s: float = Field(60, gt=0, description="Per-request timeout (connect, and each read or write).")
    max_retries: int = Field(4, ge=0, description="Retries of a request after a 429, 5xx, timeout or lost connection.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubled on each further retry.")
