"""The grounded-QA scoring the task had before it was scored by the judge (issue 14): the reference the default judge
must reproduce, written out on its own."""

from ssrtune.data.schema import Record
from ssrtune.text import contained_answer, is_refusal


def grounded_qa_correct(record: Record, prediction: str) -> bool:
    """Whether the evaluation counted `prediction` correct before the judge scored the task."""
    answerable = bool(record.meta.get("answerable", not is_refusal(record.response)))
    refused = is_refusal(prediction)
    answers = record.meta.get("answers") or [record.response]
    return (not refused and contained_answer(prediction, answers) is not None) if answerable else refused
