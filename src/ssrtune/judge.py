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
from ssrtune.store import RecordFile, StaleArtifactError, fingerprint

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


def token_recall(prediction: str, answers: list[str]) -> float:
    """Share of the gold answer's tokens found in the prediction (multiset), best over the gold alternatives."""
    predicted = Counter(normalise(prediction).split())
    best = 0.0
    for answer in answers:
        gold = Counter(normalise(answer).split())
        if gold:
            best = max(best, sum((gold & predicted).values()) / sum(gold.values()))
    return best


def token_f1(prediction: str, answers: list[str]) -> float:
    """SQuAD token F1 (multiset overlap of normalised words), best over the gold alternatives."""
    predicted = Counter(normalise(prediction).split())
    best = 0.0
    for answer in answers:
        gold = Counter(normalise(answer).split())
        same = sum((gold & predicted).values())
        if same:
            precision, recall = same / sum(predicted.values()), same / sum(gold.values())
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


# A number: an optional sign (not a hyphen inside a word or range), digits with optional thousands commas, an
# optional decimal part. `\d` also matches other scripts' digits, which `float` reads.
_NUMBER_RE = re.compile(r"(?:(?<![\w.])[-\u2212])?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


def final_number(text: str) -> float | None:
    """The last number in the text, or the first after the last GSM8K `####` marker when there is one."""
    text = unicodedata.normalize("NFKC", text)
    marker = text.rfind("####")
    if marker >= 0:
        found = _NUMBER_RE.search(text, marker + 4)
        numbers = [found.group(0)] if found else []
    else:
        numbers = _NUMBER_RE.findall(text)
    if not numbers:
        return None
    return float(numbers[-1].replace(",", "").replace("\u2212", "-"))


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


class AnswerJudge(Judge):
    """A rule comparing the candidate with the gold answer (any alternative). With `skip_refusals`, a gold refusal
    is accepted unseen: whether the candidate refuses too is the `refusal` judge's call."""

    def __init__(self, skip_refusals: bool = True):
        self.skip_refusals = skip_refusals

    @abstractmethod
    def match(self, candidate: str, answers: list[str]) -> Judgment: ...

    def judge(self, items: list[JudgeInput]) -> list[Judgment]:
        out = []
        for item in items:
            if self.skip_refusals and is_refusal(item.gold):
                out.append(Judgment("accept", "gold refuses: nothing to compare", None))
                continue
            answers = [a for a in (item.answers or [item.gold]) if normalise(a)]
            out.append(self.match(item.candidate, answers) if answers
                       else Judgment("failed", "no gold answer with words to compare"))
        return out


class ContainsJudge(AnswerJudge):
    """Accept when a normalised gold answer appears, as whole words, inside the normalised candidate."""

    def match(self, candidate: str, answers: list[str]) -> Judgment:
        found = contained_answer(candidate, answers)
        return (Judgment("accept", f"contains {found!r}", 1.0) if found is not None
                else Judgment("reject", "no gold answer inside the candidate", 0.0))


class ExactJudge(AnswerJudge):
    """Accept when the normalised candidate equals a normalised gold answer."""

    def match(self, candidate: str, answers: list[str]) -> Judgment:
        found = next((a for a in answers if normalise(a) == normalise(candidate)), None)
        return (Judgment("accept", f"equals {found!r}", 1.0) if found is not None
                else Judgment("reject", "equals no gold answer", 0.0))


class TokenScoreJudge(AnswerJudge):
    """Accept when the best token F1 (or token recall) against a gold answer reaches the threshold."""

    def __init__(self, metric: Literal["token_f1", "recall"], threshold: float, skip_refusals: bool = True):
        super().__init__(skip_refusals)
        self.metric, self.threshold = metric, threshold
        self.score = token_f1 if metric == "token_f1" else token_recall

    def match(self, candidate: str, answers: list[str]) -> Judgment:
        score = self.score(candidate, answers)
        ok = score >= self.threshold
        return Judgment("accept" if ok else "reject", f"{self.metric} {score:.3f} {'>=' if ok else '<'} "
                        f"{self.threshold}", score)


class NumericJudge(AnswerJudge):
    """GSM8K style: accept when the candidate's final number equals the gold's final number."""

    def __init__(self, tolerance: float, skip_refusals: bool = True):
        super().__init__(skip_refusals)
        self.tolerance = tolerance

    def match(self, candidate: str, answers: list[str]) -> Judgment:
        golds = [n for n in map(final_number, answers) if n is not None]
        if not golds:
            return Judgment("failed", "no number in the gold answer")
        got = final_number(candidate)
        if got is None:
            return Judgment("reject", "no number in the candidate", 0.0)
        ok = any(abs(got - g) <= self.tolerance for g in golds)
        return Judgment("accept" if ok else "reject", f"final number {got:g}, gold {golds[0]:g}", float(ok))


class RegexJudge(AnswerJudge):
    """Accept when the pattern is found in the candidate; with a group, when the group equals a gold answer."""

    def __init__(self, pattern: str, ignore_case: bool = True, skip_refusals: bool = True):
        super().__init__(skip_refusals)
        self.pattern = re.compile(pattern, re.IGNORECASE if ignore_case else 0)

    def match(self, candidate: str, answers: list[str]) -> Judgment:
        found = self.pattern.search(unicodedata.normalize("NFKC", candidate))
        if found is None:
            return Judgment("reject", "pattern not found", 0.0)
        if not self.pattern.groups:
            return Judgment("accept", f"pattern found: {found.group(0)!r}", 1.0)
        captured = found.group(1) or ""
        ok = any(normalise(captured) == normalise(a) for a in answers)
        return Judgment("accept" if ok else "reject", f"captured {captured!r}", float(ok))


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
    if config.kind == "exact":
        return ExactJudge(config.skip_refusals)
    if config.kind in ("token_f1", "recall"):
        return TokenScoreJudge(config.kind, config.threshold, config.skip_refusals)
    if config.kind == "numeric":
        return NumericJudge(config.tolerance, config.skip_refusals)
    if config.kind == "regex":
        return RegexJudge(config.pattern, config.ignore_case, config.skip_refusals)
    if config.kind == "llm":
        from ssrtune.llm_judge import build_llm_judge

        return build_llm_judge(config)
    return CombinedJudge(config.kind, [build_judge(child) for child in config.judges])


def judge_fingerprint(config: JudgeConfig) -> str:
    """The judge's settings, the text of every prompt template it uses (a changed template re-judges) and the
    refusal phrases the rules match."""
    from ssrtune.prompt_templates import JUDGE_TEMPLATE, template_text

    def templates(node: JudgeConfig) -> list[str]:
        own = [template_text(node.template, JUDGE_TEMPLATE)] if node.kind == "llm" else []
        return own + [t for child in node.judges for t in templates(child)]

    return fingerprint(config.model_dump(mode="json"), templates(config), REFUSAL_PATTERNS)


def judge_all(judge: Judge, items: list[JudgeInput], out: RecordFile, batch_size: int = 16) -> dict[str, dict]:
    """Judge every item not yet in `out`, appending verdicts batch by batch; returns all records of `out`."""
    from ssrtune.generate import progress_bar

    # Each verdict keeps a hash of the answer it judged: answers added by a resumed generation are judged, but an
    # answer that changed under a verdict is refused rather than silently kept.
    changed = [item.id for item in items if item.id in out
               and out.records[item.id].get("candidate_fp", fingerprint(item.candidate)) != fingerprint(item.candidate)]
    if changed:
        raise StaleArtifactError(f"{out.path}: {len(changed)} answers changed since they were judged (e.g. "
                                 f"{changed[0]!r}); rerun with --fresh to judge them again")
    todo = [item for item in items if item.id not in out]
    if not todo:
        return out.records
    with progress_bar(f"judge ({out.path.name})") as bar:
        task = bar.add_task("judge", total=len(items), completed=len(items) - len(todo), rate="")
        for start in range(0, len(todo), batch_size):
            batch = todo[start: start + batch_size]
            out.append({"id": item.id, **asdict(j), "candidate_fp": fingerprint(item.candidate)}
                       for item, j in zip(batch, judge.judge(batch)))
            bar.update(task, advance=len(batch))
    return out.records


def verdict_counts(judgments: dict[str, dict]) -> dict[str, int]:
    counts = Counter(j["verdict"] for j in judgments.values())
    return {k: counts.get(k, 0) for k in ("accept", "reject", "failed")}
