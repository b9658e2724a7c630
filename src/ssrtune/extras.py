"""Optional dependencies (`pip install 'ssrtune[openai]'`, `'ssrtune[vllm]'`), imported only when used."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    pass


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f"{purpose} needs the `{extra}` extra: pip install 'ssrtune[{extra}]'") from err
