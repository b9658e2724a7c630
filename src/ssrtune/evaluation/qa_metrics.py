"""Task metrics from judged answers: accuracy (the share the judge accepts) with its interval for every task, and
the paper's grounded-QA metrics (answerable token recall, unanswerable detection) where the data has
unanswerable examples."""

from __future__ import annotations

from collections.abc import Sequence

from ssrtune.data.schema import Record
from ssrtune.judges.base import verdict_counts
from ssrtune.evaluation.stats import ratio, wilson_interval
from ssrtune.text import is_refusal, token_recall


def is_answerable(record: Record) -> bool:
    """`meta.answerable` where the data says; otherwise a gold answer that is not a refusal."""
    return bool(record.meta.get("answerable", not is_refusal(record.response)))


def has_unanswerable(records: Sequence[Record]) -> bool:
    return any(not is_answerable(r) for r in records)


def grounded_scores(record: Record, prediction: str) -> dict:
    """Whether the question is answerable, whether the prediction refuses, and on answerable questions the token
    recall of the gold answer (0 for a refusal)."""
    answerable, refused = is_answerable(record), is_refusal(prediction)
    row = {"answerable": answerable, "refused": refused}
    if answerable:
        row["recall"] = 0.0 if refused else token_recall(prediction, record.meta.get("answers") or [record.response])
    return row


def judged_rows(records: Sequence[Record], predictions: dict[str, str], verdicts: dict[str, dict],
                grounded: bool) -> list[dict]:
    """One row per record: its prediction, the judge's verdict on it (`correct` when accepted), and
    `grounded_scores` when `grounded`."""
    return [{"id": r.id, "prediction": predictions[r.id], "gold": r.response,
             **{key: verdicts[r.id].get(key) for key in ("verdict", "rationale", "score")},
             "correct": verdicts[r.id]["verdict"] == "accept",
             **(grounded_scores(r, predictions[r.id]) if grounded else {})} for r in records]


def task_metrics(rows: list[dict], grounded: bool) -> dict:
    """Aggregate judged rows ({id, verdict, correct}, and `grounded_scores`'s fields when `grounded`). A failed
    verdict is not an accepted one: it lowers accuracy, and `verdicts` counts it. "Positive" in precision /
    recall / F1 means "the question is unanswerable"."""
    correct = sum(r["correct"] for r in rows)
    metrics = {"n": len(rows), "accuracy": ratio(correct, len(rows), 0.0),
               "accuracy_ci95": list(wilson_interval(correct, len(rows))),
               "verdicts": verdict_counts({r["id"]: r for r in rows})}
    if not grounded:
        return metrics
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    true_pos = sum(r["refused"] for r in unanswerable)
    predicted_pos = sum(r["refused"] for r in rows)
    precision, recall = ratio(true_pos, predicted_pos, 0.0), ratio(true_pos, len(unanswerable), 0.0)
    return {
        **metrics,
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
        "answerable_recall": ratio(sum(r["recall"] for r in answerable), len(answerable), 0.0),
        "answerable_accuracy": ratio(sum(r["correct"] for r in answerable), len(answerable), 0.0),
        "unanswerable_precision": precision,
        "unanswerable_recall": recall,
        "unanswerable_f1": ratio(2 * precision * recall, precision + recall, 0.0),
    }
