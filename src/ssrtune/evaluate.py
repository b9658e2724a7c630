"""Task evaluation with the paper's metrics: answerable token recall and unanswerable detection."""

from __future__ import annotations


from ssrtune.data import Record
from ssrtune.judge import contained_answer, is_refusal, token_recall


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


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def task_metrics(rows: list[dict]) -> dict[str, float]:
    """Aggregate per-example scores. "Positive" in precision / recall / F1 means "the question is unanswerable"."""
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    true_pos = sum(r["refused"] for r in unanswerable)
    predicted_pos = sum(r["refused"] for r in rows)
    precision, recall = _ratio(true_pos, predicted_pos), _ratio(true_pos, len(unanswerable))
    return {
        "n": len(rows),
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
        "answerable_recall": _ratio(sum(r["recall"] for r in answerable), len(answerable)),
        "answerable_accuracy": _ratio(sum(r["correct"] for r in answerable), len(answerable)),
        "unanswerable_precision": precision,
        "unanswerable_recall": recall,
        "unanswerable_f1": _ratio(2 * precision * recall, precision + recall),
        "accuracy": _ratio(sum(r["correct"] for r in rows), len(rows)),
    }
