"""The configuration pieces shared by the run configuration and the judge configurations: the strict base every
section builds on, a model, an OpenAI-compatible server and vLLM's settings."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
        "auto", description="The precision of every stage that runs this model (ssrtune.models.placement): auto = bf16 on "
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
    """An OpenAI-compatible chat-completions server (OpenAI, vLLM serve, llama.cpp server, TGI).

    The API key goes only where the configuration sends it: to the variable `api_key_env` names, and when that is not
    given, OPENAI_API_KEY for https://api.openai.com and no key to any other server. It never travels over plain
    http to another machine unless `allow_insecure_http` says so. A value given by mistake for the variable's name
    (the key itself, pasted) or a base_url holding a password is refused without being repeated in the error.
    """

    model_config = ConfigDict(**Strict.model_config, hide_input_in_errors=True)

    base_url: str = Field(description="The API root, e.g. http://127.0.0.1:8000/v1; no user name or password in it.")
    model: str = Field(description="The model name the server knows.")
    api_key_env: str | None = Field(
        None, description="NAME of the environment variable holding the key, sent as the bearer token. Not given: "
                          "OPENAI_API_KEY for https://api.openai.com, no key for any other server; null: no key.")
    allow_insecure_http: bool = Field(
        False, description="Send the key over plain http to another machine, readable on the way (a trusted "
                           "network only). Off: a key goes over https, or over http only to this machine.")
    max_concurrency: int = Field(8, gt=0, description="Requests in flight at once.")
    timeout_s: float = Field(60, gt=0, description="Total time of one request, from connecting to the last byte of "
                                                   "the reply; retries get their own.")
    max_reply_bytes: int = Field(1 << 20, gt=0, description="The largest reply taken, in bytes (1 MiB; a chat "
                                                              "completion of a few thousand tokens is a few KB).")
    max_retries: int = Field(4, ge=0, description="Retries of a request after a 429, 5xx, timeout or lost connection.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubled on each further retry.")

    @model_validator(mode="before")
    @classmethod
    def _default_key_variable(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key_env" not in data and _host(data.get("base_url")) == OPENAI_HOST:
            return {**data, "api_key_env": "OPENAI_API_KEY"}
        return data

    @field_validator("base_url")
    @classmethod
    def _plain_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000/v1")
        if "@" in parts.netloc:
            raise ValueError("must not hold a user name or password (NAME:PASSWORD@): they would be written to "
                             "config.yaml and printed; give a key through api_key_env")
        return url

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, name: str | None) -> str | None:
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError("must be the NAME of an environment variable (letters, digits and _), not the key")
        return name

    @model_validator(mode="after")
    def _key_not_in_clear(self) -> EndpointConfig:
        parts = urlsplit(self.base_url)
        if self.api_key_env and parts.scheme == "http" and not _loopback(parts.hostname) and \
                not self.allow_insecure_http:
            raise ValueError("the API key would travel unencrypted over plain http to another machine: use https, or "
                             "set allow_insecure_http: true on a trusted network, or api_key_env: null")
        return self


# The one server that gets OPENAI_API_KEY without being told to.
OPENAI_HOST = "api.openai.com"


def _host(url: Any) -> str | None:
    return urlsplit(url).hostname if isinstance(url, str) else None


def _loopback(host: str | None) -> bool:
    """This machine: localhost, 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
