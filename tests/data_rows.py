"""Rows of a user's data file, as the bad-input tests write them: one good row, and JSONL text of rows (a dict, or a
string written as it is, e.g. a broken line)."""

import json

GOOD = {"id": "a", "query": "What?", "response": "r"}


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
