"""Prompt templates shipped as files (ssrtune/templates/*.jinja) that a user may replace with their own file."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The `llm` judge's shipped template, in ssrtune/templates/ (the restating methods name theirs: methods.py).
JUDGE_TEMPLATE = "judge.jinja"


def template_text(path: str | Path | None, default: str) -> str:
    """The text of the user's template file, or of the shipped template `default` when `path` is None."""
    if path is None:
        return resources.files("ssrtune").joinpath("templates", default).read_text(encoding="utf-8")
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise FileNotFoundError(f"prompt template {path}: {err.strerror or err}") from None


@lru_cache(maxsize=16)
def _compiled(text: str):
    # A sandbox, as transformers does for chat templates: a template file is data, not code to trust. Undefined
    # names are errors, so a typo in a user's template can't silently render as an empty string.
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False,
                                        trim_blocks=True, lstrip_blocks=True)
    return env.from_string(text)


def render(text: str, **values) -> str:
    try:
        return _compiled(text).render(**values).strip()
    except TemplateError as err:
        raise ValueError(f"prompt template: {err}") from None
