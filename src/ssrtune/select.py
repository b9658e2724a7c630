"""Selection: the training target of each example, by method. All methods share this one function."""

from __future__ import annotations

from collections import Counter

from ssrtune.data import Record, prompt_messages


def select_targets(method: str, records: list[Record], generations: dict[str, dict],
                   judgments: dict[str, dict]) -> list[dict]:
    """Rows {id, messages, target, source} for `method`.

    sft: gold everywhere. ssr: the model's own answer where the judge accepted it, gold elsewhere: a failed
    judgment counts as not accepted, and an example without an own answer (its generation request failed)
    uses gold. Every example is kept.
    """
    if method not in ("sft", "ssr"):
        raise ValueError(f"unknown method {method!r}")
    rows = []
    for record in records:
        own = generations.get(record.id)
        own_ok = method == "ssr" and own is not None and judgments.get(record.id, {}).get("verdict") == "accept"
        target, source = (own["response"], "self") if own_ok else (record.response, "gold")
        rows.append({"id": record.id, "messages": prompt_messages(record), "target": target, "source": source})
    return rows


def source_shares(rows: list[dict]) -> dict[str, float]:
    counts = Counter(r["source"] for r in rows)
    return {source: counts[source] / len(rows) for source in sorted(counts)}
