"""The judge interface: (query, context, gold, candidate) in, a verdict (accept, reject or failed) out, with an
optional score and a rationale. A failed verdict means "use the gold answer" and is counted."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, get_args

from ssrtune.data.schema import Record

Verdict = Literal["accept", "reject", "failed"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


@dataclass(frozen=True)
class JudgeInput:
    id: str
    query: str
    context: str | None
    gold: str
    candidate: str
    answers: list[str] = field(default_factory=list)  # alternative gold answers, when the data has them

    @classmethod
    def of(cls, record: Record, candidate: str, id: str | None = None) -> JudgeInput:
        """`candidate` as an answer to `record`; `id`: the candidate's own, where an example has several."""
        answers = record.meta.get("answers") or [record.response]
        return cls(id or record.id, record.query, record.context, record.response, candidate, list(answers))


@dataclass(frozen=True)
class Judgment:
    verdict: Verdict
    rationale: str
    score: float | None = None


class Judge(ABC):
    """Used as a context manager: leaving it releases the judge's model, if it has one."""

    batch_size: int = 16  # items per `judge` call of the resumable judging loop (verdicts written at a time)

    @abstractmethod
    def judge(self, items: list[JudgeInput]) -> list[Judgment]: ...

    def close(self) -> None:
        """Release the judge's model (and its accelerator memory); nothing for a rule."""

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def verdict_counts(judgments: dict[str, dict]) -> dict[str, int]:
    counts = Counter(j["verdict"] for j in judgments.values())
    return {k: counts.get(k, 0) for k in VERDICTS}


def counts_in_words(counts: dict[str, int]) -> str:
    """`4 accept, 2 reject, 0 failed`: `verdict_counts` for the console."""
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
