"""What an artifact was made from: one short hash, and the named parts that say what changed.

A stage names the parts its artifact depends on: settings (`{"judge": {...}, "generate.max_new_tokens": 6}`) and
inputs known by a `Digest` (a file, a model, the settings a former stage ran under). The hash of the parts decides
whether the artifact is current; the parts, recorded beside it (small settings by value, inputs and large values by
digest), name what changed when it is not: `judge.kind changed (token_f1 -> contains)`, `generations.jsonl changed`.

The hash is taken over the parts' values in their order, exactly as earlier versions hashed their positional parts
(a `Digest` hashes as its digest string), so the artifacts those versions made stay current. Their sidecars hold
the hash alone; when it differs, all that can be said is that an earlier version made the artifact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Longer values (a prompt template, a long list) are recorded by their digest: a sidecar stays small and readable.
SHOWN_LIMIT = 120
EARLIER_VERSION = "made by an earlier version of ssrtune, which recorded no settings beside it"
UNSET = object()  # a part one side has and the other has not

Parts = Mapping[str, Any]


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (settings, file hashes, model ids)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks (a model or dataset file may not fit in memory)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_digest(path: Path) -> str:
    """A short hash of a file's bytes (`file_sha256`), as fingerprints record it."""
    return file_sha256(path)[:16]


class Digest(str):
    """A part known by its digest: hashed as that string; recorded with `shows`, the named parts behind it (a
    judge's settings behind its fingerprint), so that a change of those is named rather than only the digest's."""

    shows: Parts

    def __new__(cls, digest: str, shows: Parts | None = None) -> Digest:
        part = super().__new__(cls, digest)
        part.shows = dict(shows or {})
        return part


def parts_hash(parts: Parts) -> str:
    return fingerprint(*parts.values())


def recorded_parts(parts: Parts) -> dict[str, Any]:
    """The parts as a sidecar records them, by flat dotted names: a setting as its value, a `Digest` or a large
    value as {"digest": ..., "shows": [the names behind it]}; a mapping is flattened into its keys."""
    flat: dict[str, Any] = {}

    def add(name: str, value: Any) -> None:
        if isinstance(value, Digest):
            flat[name] = {"digest": str(value), "shows": list(flatten(value.shows))}
            for key, item in value.shows.items():
                add(key, item)
        elif isinstance(value, Mapping) and value:
            for key, item in value.items():
                add(f"{name}.{key}", item)
        elif len(json.dumps(value, default=str, ensure_ascii=False)) > SHOWN_LIMIT:
            flat[name] = {"digest": fingerprint(value), "shows": []}
        else:
            flat[name] = value

    def flatten(shows: Parts) -> list[str]:
        names = []
        for key, value in shows.items():
            if isinstance(value, Mapping) and value:
                names += [f"{key}.{sub}" for sub in flatten(value)]
            else:
                names.append(key)
        return names

    for name, value in parts.items():
        add(name, value)
    return json.loads(json.dumps(flat, default=str, ensure_ascii=False))  # as read back: a tuple is a list


def changes(recorded: Mapping[str, Any], parts: Parts) -> list[str]:
    """What differs between the parts a sidecar recorded and `parts`, in words, one entry per change: a setting
    with its old and new value, an input by its name (unless a change behind its digest is named already)."""
    old = recorded.get("parts")
    if old is None:
        return [EARLIER_VERSION]
    new = recorded_parts(parts)
    names = [*new, *(name for name in old if name not in new)]
    changed = [name for name in names if old.get(name, UNSET) != new.get(name, UNSET)]
    explained = {name for name in changed for entry in (old.get(name), new.get(name)) if is_digest(entry)
                 and set(entry["shows"]) & set(changed)}
    said = [describe(name, old.get(name, UNSET), new.get(name, UNSET)) for name in changed if name not in explained]
    return said or ["made with other inputs or settings"]


def is_digest(entry: Any) -> bool:
    return isinstance(entry, dict) and set(entry) == {"digest", "shows"}


def describe(name: str, old: Any, new: Any) -> str:
    """`judge.kind changed (token_f1 -> contains)`; `generations.jsonl changed` for an input or a large value."""
    if is_digest(old) or is_digest(new):
        return f"{name} changed"
    return f"{name} changed ({shown(old)} -> {shown(new)})"


def shown(value: Any) -> str:
    if value is UNSET:
        return "unset"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
