"""Selection: the training target of each example, by method. All methods share this one function."""

from __future__ import annotations

from collections import Counter
from typing import get_args

from ssrtune.config import Method
from ssrtune.data import Record, prompt_messages

OWN_ANSWER_METHODS = ("ssr", "s3ft", "self_only")
RESTATING_METHODS = ("s3ft", "sdft")  # methods that train on the base model's restatement of the gold answer


def select_targets(method: str, records: list[Record], generations: dict[str, dict], judgments: dict[str, dict],
                   restated: dict[str, dict] | None = None,
                   restated_judgments: dict[str, dict] | None = None) -> list[dict]:
    """Rows {id, messages, target, source} for `method`; source is self, paraphrase, gold or dropped.

    sft: gold everywhere. ssr: the model's own answer where the judge accepted it, gold elsewhere. s3ft: the own
    answer where accepted, else the model's paraphrase of the gold (`restated`) where accepted, else gold. sdft:
    the model's rewrite of the gold (`restated`) where accepted, else gold. self_only: the own answer where
    accepted; the other examples are dropped (target None). A failed judgment counts as not accepted, and so
    does a verdict on an answer that is missing (its generation request failed).
    """
    if method not in get_args(Method):
        raise ValueError(f"unknown method {method!r}")
    tries = [(generations, judgments, "self")] if method in OWN_ANSWER_METHODS else []
    if method in RESTATING_METHODS:
        tries.append((restated or {}, restated_judgments or {}, "paraphrase"))
    rows = []
    for record in records:
        target, source = (None, "dropped") if method == "self_only" else (record.response, "gold")
        for answers, verdicts, label in tries:
            if record.id in answers and verdicts.get(record.id, {}).get("verdict") == "accept":
                target, source = answers[record.id]["response"], label
                break
        rows.append({"id": record.id, "messages": prompt_messages(record), "target": target, "source": source})
    return rows


def trained_rows(rows: list[dict]) -> list[dict]:
    """The rows a model trains on: all but the dropped ones (which have no target)."""
    return [row for row in rows if row["target"] is not None]


def source_shares(rows: list[dict]) -> dict[str, float]:
    counts = Counter(r["source"] for r in rows)
    return {source: counts[source] / len(rows) for source in sorted(counts)}
