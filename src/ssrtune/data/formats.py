"""The dataset shapes users bring, by name (`data.format`): each turns one row of its shape into our record's fields
(`messages` ending with the user's turn, `response`), and leaves the row's other columns as they are (an `id` or a
`context` column is read as ours; the rest go to the record's `meta`).

- `record`: ours (README: Your own data), with `data.fields` naming the user's columns.
- `alpaca`: `instruction`, optional `input` (appended to it after a blank line), `output`; optional `system` and
  `history` (earlier [question, answer] pairs), as LLaMA-Factory reads them.
- `sharegpt`: `conversations`, a list of `{from, value}` turns (human / gpt / system), the last one gpt's: the gold
  answer; optional `system`.
- `messages`: OpenAI-style `messages`, a list of `{role, content}` turns, the last one the assistant's: the gold
  answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Literal

from pydantic import Field

# ShareGPT's speakers, as the datasets name them, to our roles.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class ShapeError(ValueError):
    """A row that does not have its format's shape: the field and what is wrong."""

    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field


def _text(row: dict, key: str, required: bool = True) -> str:
    value = row.pop(key, None)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ShapeError(key, "missing" if value is None else f"expected text, got {type(value).__name__}")
    return value


def _system_turn(row: dict) -> list[dict]:
    system = _text(row, "system", required=False)
    return [{"role": "system", "content": system}] if system.strip() else []


def _alpaca(row: dict) -> dict:
    instruction, extra = _text(row, "instruction"), _text(row, "input", required=False)
    history = row.pop("history", None) or []
    if not isinstance(history, list) or not all(isinstance(p, list) and len(p) == 2 for p in history):
        raise ShapeError("history", "expected a list of [question, answer] pairs")
    turns = [{"role": role, "content": text} for pair in history for role, text in zip(("user", "assistant"), pair)]
    query = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    response, system = _text(row, "output"), _system_turn(row)
    return {**row, "messages": [*system, *turns, {"role": "user", "content": query}], "response": response}


def _gold_last(turns: Any, key: str, role_key: str, content_key: str, roles: dict[str, str]) -> tuple[list, str]:
    """The turns before the last, in our roles, and the last turn's text, which must be the assistant's."""
    if not isinstance(turns, list) or not turns:
        raise ShapeError(key, "missing" if turns is None else "expected a non-empty list of turns")
    ours = []
    for number, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get(content_key), str):
            raise ShapeError(f"{key}.{number}", f"expected {{{role_key}, {content_key}}} with text")
        role = roles.get(turn.get(role_key))
        if role is None:
            raise ShapeError(f"{key}.{number}.{role_key}", f"{turn.get(role_key)!r} is not one of: {', '.join(roles)}")
        ours.append({"role": role, "content": turn[content_key]})
    if ours[-1]["role"] != "assistant":
        raise ShapeError(f"{key}.{len(turns) - 1}", "the last turn must be the answer (the assistant's): it is the "
                                                    "gold response")
    if len(ours) < 2:
        raise ShapeError(key, "holds only the answer: the question must come before it")
    return ours[:-1], ours[-1]["content"]


def _sharegpt(row: dict) -> dict:
    turns, response = _gold_last(row.pop("conversations", None), "conversations", "from", "value", SHAREGPT_ROLES)
    system = _system_turn(row)
    return {**row, "messages": [*system, *turns], "response": response}


def _openai_messages(row: dict) -> dict:
    roles = {role: role for role in ("system", "user", "assistant")}
    turns, response = _gold_last(row.pop("messages", None), "messages", "role", "content", roles)
    return {**row, "messages": turns, "response": response}


FORMATS: dict[str, Callable[[dict], dict] | None] = {"record": None, "alpaca": _alpaca, "sharegpt": _sharegpt,
                                                     "messages": _openai_messages}
# The `format` setting of a data source (data, evaluate.datasets).
DataFormat = Annotated[Literal[tuple(FORMATS)], Field(description=(
    "The shape of the rows: `record` (ours, mapped by `fields`), `alpaca` (instruction, input, output), `sharegpt` "
    "(conversations of from/value turns) or `messages` (OpenAI-style role/content turns); in the last three the final "
    "turn is the gold answer (ssrtune.data.formats)."))]
# The record fields each format makes itself: `data.fields` may not map them too.
MADE_BY_FORMAT = ("messages", "query", "response")


def reshape(row: dict, format: str) -> dict:
    """`row` (a copy) in our record's field names; raises `ShapeError` naming the field that is wrong."""
    shape = FORMATS[format]
    return dict(row) if shape is None else shape(dict(row))


def check_format_fields(format: str, fields: dict[str, str]) -> None:
    """A format other than `record` makes the turns and the answer itself: a mapping for them would be ignored."""
    clash = [ours for ours in fields if ours in MADE_BY_FORMAT]
    if format != "record" and clash:
        raise ValueError(f"`fields` maps {', '.join(clash)}, which format {format!r} takes from its own columns; "
                         "map only id, context or meta with a format (or use format: record)")
