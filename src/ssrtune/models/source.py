"""Where a configured model's files come from, decided before any work starts: the embedded model, a local folder or
file, a snapshot in the Hugging Face cache, or the Hub over the network -- each as huggingface_hub itself sees it, so
that a model that cannot be had is one line naming it and what to do, not a loader's traceback after the first
stages ran."""

from __future__ import annotations

from pathlib import Path

from ssrtune.config.errors import ConfigError
from ssrtune.config.fields import ModelConfig

# Seconds to wait for the Hub's answer about a model that is not cached (huggingface_hub's own default is 10).
HUB_TIMEOUT = 10.0


class ModelUnavailable(ConfigError):
    """A configured model that is neither here nor reachable."""


def model_source(model: ModelConfig) -> str:
    """Where `model` comes from, in words; raises `ModelUnavailable` when it can't be had."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from ssrtune.models.loading import EMBEDDED_MODELS

    name = model.name
    if name in EMBEDDED_MODELS:
        return "the embedded model"
    path = Path(name).expanduser()
    if path.exists():
        return f"local {'folder' if path.is_dir() else 'file'} {path.absolute()}"
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ModelUnavailable(f"model {name!r}: no such file or folder ({path.absolute()}), and not a Hugging Face "
                               "model id (ORG/NAME)") from None
    if path.suffix == ".gguf":
        raise ModelUnavailable(f"model {name!r}: no such file ({path.absolute()})")
    revision = f" at revision {model.revision}" if model.revision else ""
    if isinstance(try_to_load_from_cache(name, "config.json", revision=model.revision), str):
        return f"Hugging Face cache ({constants.HF_HUB_CACHE}){revision}"
    if constants.is_offline_mode():
        raise ModelUnavailable(
            f"model {name!r}{revision} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the Hub is off "
            "(HF_HUB_OFFLINE is set): download it once with network (`hf download "
            f"{name}`), point HF_HUB_CACHE or HF_HOME at a cache that has it, or set model.name to a local folder")
    return f"the Hugging Face Hub (not cached: downloaded on first use){revision}" + _hub_check(model)


def _hub_check(model: ModelConfig) -> str:
    """"" when the Hub has the model; raises `ModelUnavailable` with the Hub's reason otherwise."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    name = model.name
    try:
        HfApi().model_info(name, revision=model.revision, timeout=HUB_TIMEOUT)
    except GatedRepoError:
        raise ModelUnavailable(f"model {name!r} is gated on the Hub: accept its terms on its page and give a token "
                               "(HF_TOKEN, or `hf auth login`)") from None
    except RevisionNotFoundError:
        raise ModelUnavailable(f"model {name!r} has no revision {model.revision!r} on the Hub") from None
    except RepositoryNotFoundError:
        raise ModelUnavailable(f"model {name!r}: no such model on the Hub (or it is private: give a token with "
                               "HF_TOKEN), and no such local folder") from None
    except Exception as err:  # no network, a proxy, a timeout, a server error: whatever stands between us and the Hub
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelUnavailable(f"model {name!r} is not in the Hugging Face cache and the Hub can't be reached "
                               f"({reason}): connect, or download it where there is network and carry the cache "
                               "over (HF_HUB_CACHE), or set model.name to a local folder") from None
    return ""


def configured_models(config) -> list[tuple[str, ModelConfig]]:
    """(setting, model) for each model a run loads: the base model and every local llm judge's model."""
    from ssrtune.config.judges import LocalLLMJudgeConfig

    return [("model", config.model), *((f"{where}.model", judge.model) for where, judge in config.leaf_judges()
                                       if isinstance(judge, LocalLLMJudgeConfig))]


def check_models_available(config) -> None:
    """Refuse a run whose models can't be had (`model_source`), each named by its setting."""
    for where, model in configured_models(config):
        try:
            model_source(model)
        except ModelUnavailable as err:
            raise ModelUnavailable(f"{where}: {err}") from None
