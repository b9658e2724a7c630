"""A configuration's validation errors in the user's words: one line per error, its key path without the union tags
pydantic puts in it, the union member's own words where it is one (a judge kind, a data recipe), and for an unknown
key the known key it most resembles ("did you mean")."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError

from ssrtune.config.judges import KINDS, LLM_ENGINES, TAG_MARK
from ssrtune.registry import did_you_mean

KEYED = re.compile(r"^[A-Za-z_][\w.]*: ")


class ConfigError(ValueError):
    """A bad setting, named: in a configuration file, an override, or one this machine cannot serve
    (models.placement.PlacementError); the command line prints it as one line."""


def validation_message(path: Path | str | None, err: ValidationError, schema: Any) -> str:
    """One line per error of validating against `schema` (a model class or an annotated union)."""
    lines = [f"{path or 'config'}: invalid configuration"]
    for e in err.errors():
        tags = [str(p) for p in e["loc"] if TAG_MARK in str(p)]
        keys = [str(p) for p in e["loc"] if TAG_MARK not in str(p)]
        where = ".".join(keys) or "(top level)"
        message = error_words(e)
        if not keys and KEYED.match(message):  # a whole-config check names the key it is about
            where, message = message.split(": ", 1)
        if e["type"] == "judge_kind":
            kind = e["input"].get("kind") if isinstance(e["input"], dict) else None
            where, message = ((f"{where}.engine", f"an `llm` judge's engine is {', '.join(LLM_ENGINES[:-1])} or "
                               f"{LLM_ENGINES[-1]}, not {e['input'].get('engine')!r}") if kind == "llm" else
                              (f"{where}.kind", f"unknown judge kind {kind!r}; one of: {', '.join(KINDS)}"))
        elif e["type"] == "data_recipe":
            where, message = f"{where}.recipe", f"unknown recipe {e['input'].get('recipe')!r}; grounded-qa or null"
        elif e["type"] == "extra_forbidden":
            message = _unknown_key(schema, e["loc"], tags)
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def error_words(error: dict) -> str:
    """A validator's own words, without pydantic's "Value error, " before them."""
    return str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]


def _unknown_key(schema: Any, loc: tuple, tags: list[str]) -> str:
    """A key of another member of a union says whose key it is; else the closest known key is suggested; else, in a
    union member, the key does not apply to it."""
    key = str(loc[-1])
    if tags and TAG_MARK in str(loc[-2]) and key in _keys_at(schema, loc[:-2]):
        return _not_applicable(key, tags[-1])
    suggestion = did_you_mean(key, _keys_at(schema, loc[:-1]))
    return _not_applicable(key, tags[-1]) if tags and not suggestion else f"unknown key `{key}`{suggestion}"


def _members(annotation: Any) -> list[tuple[Any, list[str]]]:
    """The types an annotation allows (Optional, unions and Annotated unwrapped), each with its union tags."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extras = get_args(annotation)
        tags = [extra.tag for extra in extras if isinstance(extra, Tag)]
        return [(member, tags + own) for member, own in _members(inner)]
    if origin in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [(annotation, [])]


def _step(annotation: Any, part: Any) -> Any:
    """The annotation one key (a field name, a list index or a union tag) below `annotation`; None if unknown."""
    for member, tags in _members(annotation):
        if isinstance(part, int) and get_origin(member) is list:
            return get_args(member)[0]
        if part in tags:
            return member
        if isinstance(member, type) and issubclass(member, BaseModel) and part in member.model_fields:
            return member.model_fields[part].annotation
    return None


def _keys_at(schema: Any, loc: tuple) -> list[str]:
    """The field names of the section at `loc` (tags included) in `schema`."""
    node = schema
    for part in loc:
        node = _step(node, part)
        if node is None:
            return []
    return [name for member, _ in _members(node) if isinstance(member, type) and issubclass(member, BaseModel)
            for name in member.model_fields]


def _not_applicable(key: str, tag: str) -> str:
    what, value = tag.split(TAG_MARK)
    if what == "kind":
        kind, _, engine = value.partition("/")
        return f"`{key}` does not apply to a judge of kind `{kind}`" + (f" with engine {engine}" if engine else "")
    if value == "null":
        return f"`{key}` is a setting of a built-in recipe; your own files (recipe: null) don't use it"
    return f"`{key}` is for your own files (recipe: null); the `{value}` recipe doesn't use it"
