"""The task record every stage reads, and the error that locates a bad one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticSerializationError, to_json

from ssrtune.registry import did_you_mean


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class Record(BaseModel):
    """One task example. The final user turn of `messages` is the query; `response` is the gold answer."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    context: str | None = None
    response: str = Field(min_length=1)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role != "user":
            raise ValueError("the last message must be the user's query")
        if not messages[-1].content.strip():
            raise ValueError("the user's query is blank")
        return messages

    @field_validator("response")
    @classmethod
    def _not_blank(cls, response: str) -> str:
        if not response.strip():
            raise ValueError("the gold response is blank")
        return response

    @field_validator("meta")
    @classmethod
    def _writable(cls, meta: dict[str, Any]) -> dict[str, Any]:
        """Every stage writes `meta` to JSON: what cannot be written (bytes that are not UTF-8, nesting past the
        serializer's depth limit, an object of no JSON type) is this record's error, not a crash when it is saved."""
        try:
            to_json(meta)
        except PydanticSerializationError as err:
            raise ValueError(f"cannot be written as JSON ({str(err).removeprefix('Error serializing to JSON: ')})"
                             ) from None
        return meta

    @property
    def query(self) -> str:
        return self.messages[-1].content


# What `data.fields` may map a user's column to: a Record field, or `query` (a flat record's one user turn).
MAPPABLE_FIELDS = ("id", "messages", "query", "context", "response", "meta")


def check_field_mapping(fields: dict[str, str]) -> dict[str, str]:
    """A `fields` mapping whose every key is one of our field names: a typo there would otherwise leave the column
    unread (an extra column is kept in `meta`)."""
    for ours in fields:
        if ours not in MAPPABLE_FIELDS:
            raise ValueError(f"{ours!r} is not a record field{did_you_mean(ours, list(MAPPABLE_FIELDS))} (a mapping "
                             f"is ours: theirs; map a column to one of: {', '.join(MAPPABLE_FIELDS)})")
    return fields


class DataError(ValueError):
    """Bad input, located: file, line (or row) and field."""

    def __init__(self, path: Path | str, line: int | None, field: str | None, problem: str):
        where = f"{path}" + (f", line {line}" if line is not None else "") + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {problem}")
