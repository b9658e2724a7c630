"""The configuration pieces shared by the run configuration and the judge configurations: the strict base every
section builds on, a model, and an OpenAI-compatible server."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A name that becomes a file or folder name in the run directory (a run, a trained model, an eval set, an audit): no
# path separator and no leading dot, so never `..` or a hidden file.
PLAIN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class Strict(BaseModel):
    # Unknown keys are errors: a typo in a config must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # Settings replaced by others: giving one is an error that names its replacement, not an unknown key.
    REMOVED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        for key in sorted(cls.REMOVED.keys() & (data.keys() if isinstance(data, dict) else set())):
            raise ValueError(f"`{key}` was replaced by {cls.REMOVED[key]}")
        return data


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
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="The precision of every stage that runs this model (ssrtune.placement): auto = bf16 on "
                            "GPUs with native bf16, fp16 on older GPUs; on a CPU float32 weights, computing under bf16 "
                            "autocast where the CPU has native bf16. bfloat16 on a CPU is float32 weights under bf16 "
                            "autocast; float16 needs a GPU.")
    device_map: str | None = Field(
        None, pattern=r"^(cpu|cuda(:\d+)?|auto|balanced|balanced_low_0|sequential)$",
        description="transformers engine: where the weights go. null = one device: this process's GPU, else the "
                    "CPU; cpu or cuda:N = that device; auto, balanced, balanced_low_0 or sequential = one model "
                    "sharded over every visible GPU (transformers' device_map).")
    attn_implementation: str | None = Field(
        None, description="transformers engine: the attention kernel (sdpa, eager, flash_attention_2, ...); null = "
                          "transformers' default.")


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


class VllmConfig(Strict):
    """vLLM's offline engine on GPUs (pip install 'ssrtune[vllm]'); it runs in a child process of each stage, whose
    end frees the GPU memory it held."""

    tensor_parallel_size: int = Field(1, gt=0, description="GPUs to shard the model over.")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0, description="Share of each GPU's memory vLLM takes "
                                                                           "(weights, activations, KV cache).")
    max_model_len: int | None = Field(None, gt=16, description="The longest prompt plus answer vLLM plans for; "
                                                               "null = the model's own limit.")
    max_num_seqs: int | None = Field(None, gt=0, description="Sequences in flight at once; null = vLLM's default.")
    enforce_eager: bool = Field(False, description="No CUDA graphs: less memory and a faster start, slower decoding.")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="The precision vLLM runs in; null = what model.dtype decides for the GPU.")


class EngineSettings(Strict):
    """Which engine answers prompts (ssrtune.inference.factory.build_lm); the model's placement and precision are
    the model's own settings (`model.dtype`, `model.device_map`)."""

    engine: Literal["transformers", "vllm", "openai"] = Field(
        "transformers", description="transformers (in this process: CPU, one GPU or one model sharded over GPUs), "
                                    "vllm (vLLM on GPUs; the run's `vllm` settings) or openai (any OpenAI-compatible "
                                    "server).")
    endpoint: EndpointConfig | None = Field(None, description="The server of the openai engine.")
    batch_size: int = Field(16, gt=0, description="transformers: prompts per batch.")
    REMOVED: ClassVar[dict[str, str]] = {
        "bf16": "model.dtype (auto | float32 | bfloat16 | float16: one precision for every stage of the model)",
        "tensor_parallel_size": "vllm.tensor_parallel_size (the run's vllm settings, shared by every stage)",
    }

    @model_validator(mode="after")
    def _endpoint_for_openai(self) -> EngineSettings:
        if (self.engine == "openai") != (self.endpoint is not None):
            raise ValueError("`endpoint` is required by engine `openai`, and only by it")
        return self
