"""Named registries (methods, engines, ...) that a configuration is checked against when it is read.

A registry is filled by the module that defines its entries (`populated_by`): a class registers itself when that
module is imported. The configuration imports the registry, never that module, so that it stays a leaf; the first
lookup imports the defining module, so a name is checked against every entry defined so far, including entries
a user defined after the configuration module was imported.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar


T = TypeVar("T")


def did_you_mean(given: str, known: list[str]) -> str:
    """"; did you mean `x`?" for the known name closest to `given` (difflib's ratio 0.6 or more), else ""."""
    close = difflib.get_close_matches(given, known, n=1)
    return f"; did you mean `{close[0]}`?" if close else ""


class Registry(Generic[T]):
    """Entries by name, of one kind (`what`: "method", "engine"), filled by the module `populated_by`."""

    def __init__(self, what: str, populated_by: str):
        self.what, self.populated_by = what, populated_by
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """A class decorator: `@ENGINES.register("vllm")`."""
        return lambda entry: self.add(name, entry)

    def _filled(self) -> dict[str, T]:
        importlib.import_module(self.populated_by)  # a no-op once imported
        return self._entries

    def __getitem__(self, name: str) -> T:
        return self._filled()[self.check(name)]

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._filled().get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._filled())

    def items(self) -> list[tuple[str, T]]:
        return list(self._filled().items())

    def values(self) -> list[T]:
        return list(self._filled().values())

    def check(self, name: str) -> str:
        """`name` if registered; else a ValueError naming the registered ones and the closest (a pydantic validator:
        the error names the config field)."""
        entries = self._filled()
        if name not in entries:
            raise ValueError(f"unknown {self.what} {name!r}; one of: {', '.join(entries)}"
                             f"{did_you_mean(name, list(entries))}")
        return name


# The registries a configuration names entries of; each is filled by the module that defines its entries.
METHODS = Registry("method", populated_by="ssrtune.methods")
BENCHMARKS = Registry("benchmark", populated_by="ssrtune.evaluation.benchmarks")
