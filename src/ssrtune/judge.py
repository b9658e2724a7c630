"""Judges: does the model's own answer do as well as the gold one?

A judge maps (query, context, gold, candidate) to a verdict — accept, reject or failed — with an optional
score and a rationale. A failed verdict means "use the gold answer" and is counted.
"""

from __future__ import annotations

import re
import unicodedata
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal

from ssrtune.config import JudgeConfig
from ssrtune.data import Record
from ssrtune.store import RecordFile

Verdict = Literal["accept", "reject", "failed"]


@dataclass(frozen=True)
class JudgeInput:
    id: str
    query: str
    context: str | None
    gold: str
    candidate: str
    answers: list[str] = field(default_factory=list)  # alternative gold answers, when the data has them

    @classmethod
    def of(cls, record: Record, candidate: str) -> JudgeInput:
        answers = record.meta.get("answers") or [record.response]
        return cls(record.id, record.query, record.context, record.response, candidate, list(answers))


@dataclass(frozen=True)
class Judgment:
    verdict: Verdict
    rationale: str
    score: float | None = None


# Phrases that mark an answer as a refusal to answer from the document. Matched on the normalised text
# (lower case, apostrophes unified), anywhere in the answer.
REFUSAL_PATTERNS = [
    r"\b(cannot|can not|can't|unable to|not able to) (be )?(answer|answered|determine|determined|find|tell|say)",
    r"\bdoes(n't| not) (contain|mention|say|state|specify|provide|include|answer|tell)",
    r"\b(is|are) not (mentioned|stated|specified|provided|given|included)",
    r"\bno (information|mention|answer)\b",
    r"\bnot enough information\b",
    r"\bnot (in|from) the (document|text|passage|context)\b",
    r"\b(i do not|i don't) know\b",
    r"\bunanswerable\b",
]
_REFUSAL_RE = re.compile("|".join(REFUSAL_PATTERNS))


def normalise(text: str) -> str:
    """SQuAD-style normalisation: NFKC, lower case, no punctuation, no articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contained_answer(candidate: str, answers: list[str]) -> str | None:
    """The first gold answer whose normalised form appears, as whole words, in the normalised candidate."""
    padded = f" {normalise(candidate)} "
    return next((a for a in answers if normalise(a) and f" {normalise(a)} " in padded), None)


def is_refusal(text: str) -> bool:
    # Whitespace collapsed: a refusal wrapped over two lines is still one.
    text = " ".join(unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").split())
    return bool(_REFUSAL_RE.search(text))


class Judge(ABC):
    @abstractmethod
    def judge(self, items: list[JudgeInput]) -> list[Judgment]: ...


class RefusalJudge(Judge):
    """Accept when the candidate refuses exactly when the gold refuses."""

    def judge(self, items: list[JudgeInput]) -> list[Judgment]:
        out = []
        for item in items:
            gold, candidate = is_refusal(item.gold), is_refusal(item.candidate)
            word = {True: "refuses", False: "answers"}
            ok = gold == candidate
            out.append(Judgment("accept" if ok else "reject", f"gold {word[gold]}, candidate {word[candidate]}",
                                float(ok)))
        return out


class ContainsJudge(Judge):
    """Accept when a normalised gold answer (any alternative) appears inside the normalised candidate."""

    def __init__(self, skip_refusals: bool = True):
        self.skip_refusals = skip_refusals

    def judge(self, items: list[JudgeInput]) -> list[Judgment]:
        out = []
        for item in items:
            if self.skip_refusals and is_refusal(item.gold):
                out.append(Judgment("accept", "gold refuses: nothing to contain", None))
                continue
            found = contained_answer(item.candidate, item.answers or [item.gold])
            out.append(Judgment("accept", f"contains {found!r}", 1.0) if found is not None
                       else Judgment("reject", "no gold answer inside the candidate", 0.0))
        return out


class CombinedJudge(Judge):
    """`all`: accept when every child accepts; `any`: when one does. A failed child fails an undecided verdict."""

    def __init__(self, mode: Literal["all", "any"], judges: list[Judge]):
        self.mode, self.judges = mode, judges

    def judge(self, items: list[JudgeInput]) -> list[Judgment]:
        per_judge = [j.judge(items) for j in self.judges]
        out = []
        for verdicts in zip(*per_judge):
            kinds = [v.verdict for v in verdicts]
            decisive = "reject" if self.mode == "all" else "accept"
            if decisive in kinds:
                verdict: Verdict = decisive
            elif "failed" in kinds:
                verdict = "failed"
            else:
                verdict = "accept" if self.mode == "all" else "reject"
            out.append(Judgment(verdict, f"{self.mode}: " + "; ".join(f"{v.verdict} ({v.rationale})"
                                                                       for v in verdicts)))
        return out


def build_judge(config: JudgeConfig) -> Judge:
    if config.kind == "refusal":
        return RefusalJudge()
    if config.kind == "contains":
        return ContainsJudge(config.skip_refusals)
    return CombinedJudge(config.kind, [build_judge(child) for child in config.judges])


def judge_all(judge: Judge, items: list[JudgeInput], out: RecordFile, batch_size: int = 64) -> dict[str, dict]:
    """Judge every item not yet in `out`, appending verdicts batch by batch; returns all records of `out`."""
    todo = [item for item in items if item.id not in out]
    for start in range(0, len(todo), batch_size):
        batch = todo[start: start + batch_size]
        out.append({"id": item.id, **asdict(j)} for item, j in zip(batch, judge.judge(batch)))
    return out.records


def verdict_counts(judgments: dict[str, dict]) -> dict[str, int]:
    counts = Counter(j["verdict"] for j in judgments.values())
    return {k: counts.get(k, 0) for k in ("accept", "reject", "failed")}
