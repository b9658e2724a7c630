"""Grounded-QA scoring with the paper's metrics: answerable token recall and unanswerable detection."""

from __future__ import annotations

from ssrtune.data.schema import Record
from ssrtune.stats import ratio
from ssrtune.text import contained_answer, is_refusal, token_recall


def score_example(record: Record, prediction: str) -> dict:
    answerable = bool(record.meta.get("answerable", not is_refusal(record.response)))
    refused = is_refusal(prediction)
    answers = record.meta.get("answers") or [record.response]
    row = {"id": record.id, "answerable": answerable, "refused": refused, "prediction": prediction,
           "gold": record.response}
    if answerable:
        row["recall"] = 0.0 if refused else token_recall(prediction, answers)
        row["correct"] = not refused and contained_answer(prediction, answers) is not None
    else:
        row["correct"] = refused
    return row


def task_metrics(rows: list[dict]) -> dict[str, float]:
    """Aggregate per-example scores. "Positive" in precision / recall / F1 means "the question is unanswerable"."""
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    true_pos = sum(r["refused"] for r in unanswerable)
    predicted_pos = sum(r["refused"] for r in rows)
    precision, recall = ratio(true_pos, predicted_pos, 0.0), ratio(true_pos, len(unanswerable), 0.0)
    return {
        "n": len(rows),
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
        "answerable_recall": ratio(sum(r["recall"] for r in answerable), len(answerable), 0.0),
        "answerable_accuracy": ratio(sum(r["correct"] for r in answerable), len(answerable), 0.0),
        "unanswerable_precision": precision,
        "unanswerable_recall": recall,
        "unanswerable_f1": ratio(2 * precision * recall, precision + recall, 0.0),
        "accuracy": ratio(sum(r["correct"] for r in rows), len(rows), 0.0),
    }
