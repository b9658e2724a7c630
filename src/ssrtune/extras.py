"""Optional dependencies (`pip install 'ssrtune[openai]'`, `'ssrtune[vllm]'`), imported only when used."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


class MissingExtraError(ImportError):
    pass


def _missing(extra: str, purpose: str) -> MissingExtraError:
    return MissingExtraError(f"{purpose} needs the `{extra}` extra: pip install 'ssrtune[{extra}]'")


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise _missing(extra, purpose) from err


def check_extra(module: str, extra: str, purpose: str) -> None:
    """Fail as `import_extra` would, without importing `module` here (for one another process will import)."""
    if importlib.util.find_spec(module) is None:
        raise _missing(extra, purpose)
