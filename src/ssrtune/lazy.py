"""Lazy public names of a package (PEP 562): `import ssrtune` stays cheap, and a name's module (with torch,
transformers or pydantic behind it) is imported when the name is first used."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing would cost more than the whole package
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, whose public `names` live in the modules they map to (a
    module path; a name mapped to its own full path is that module itself)."""
    own = sys.modules[package].__dict__  # the package's own attributes, shown by dir() beside the lazy ones

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        from importlib import import_module

        module = import_module(names[name])
        return module if names[name] == f"{package}.{name}" else getattr(module, name)

    def __dir__() -> list[str]:
        return sorted(set(own) | set(names))

    return __getattr__, __dir__
