"""Rule judges: refusal matching, and rules comparing the candidate with the gold answer (contains, exact, token
F1 / recall, the final number, a regular expression); `all` / `any` compose them."""

from __future__ import annotations

import re
import unicodedata
from abc import abstractmethod

from ssrtune.judges.base import Judge, JudgeInput, Judgment, Verdict
from ssrtune.config.judges import (AnswerRuleConfig, NumericJudgeConfig, RegexJudgeConfig, TokenScoreJudgeConfig)
from ssrtune.text import contained_answer, final_number, is_refusal, normalise, token_f1, token_recall


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

    def __init__(self, config: AnswerRuleConfig):
        self.config = config

    @abstractmethod
    def match(self, candidate: str, answers: list[str]) -> Judgment: ...

    def judge(self, items: list[JudgeInput]) -> list[Judgment]:
        out = []
        for item in items:
            if self.config.skip_refusals and is_refusal(item.gold):
                out.append(Judgment("accept", "gold refuses: nothing to compare", None))
                continue
            answers = [a for a in (item.answers or [item.gold]) if normalise(a)]
            out.append(self.match(item.candidate, answers) if answers
                       else Judgment("failed", "no gold answer with words to compare"))
        return out


class ContainsJudge(AnswerJudge):
    def match(self, candidate: str, answers: list[str]) -> Judgment:
        found = contained_answer(candidate, answers)
        return (Judgment("accept", f"contains {found!r}", 1.0) if found is not None
                else Judgment("reject", "no gold answer inside the candidate", 0.0))


class ExactJudge(AnswerJudge):
    def match(self, candidate: str, answers: list[str]) -> Judgment:
        found = next((a for a in answers if normalise(a) == normalise(candidate)), None)
        return (Judgment("accept", f"equals {found!r}", 1.0) if found is not None
                else Judgment("reject", "equals no gold answer", 0.0))


class TokenScoreJudge(AnswerJudge):
    config: TokenScoreJudgeConfig

    def match(self, candidate: str, answers: list[str]) -> Judgment:
        score = (token_f1 if self.config.kind == "token_f1" else token_recall)(candidate, answers)
        ok = score >= self.config.threshold
        return Judgment("accept" if ok else "reject", f"{self.config.kind} {score:.3f} {'>=' if ok else '<'} "
                        f"{self.config.threshold}", score)


class NumericJudge(AnswerJudge):
    config: NumericJudgeConfig

    def match(self, candidate: str, answers: list[str]) -> Judgment:
        golds = [float(n) for n in map(final_number, answers) if n is not None]
        if not golds:
            return Judgment("failed", "no number in the gold answer")
        number = final_number(candidate)
        if number is None:
            return Judgment("reject", "no number in the candidate", 0.0)
        got = float(number)
        ok = any(abs(got - g) <= self.config.tolerance for g in golds)
        return Judgment("accept" if ok else "reject", f"final number {got:g}, gold {golds[0]:g}", float(ok))


class RegexJudge(AnswerJudge):
    config: RegexJudgeConfig

    def __init__(self, config: RegexJudgeConfig):
        super().__init__(config)
        self.pattern = re.compile(config.pattern, re.IGNORECASE if config.ignore_case else 0)

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

    def __init__(self, mode: str, judges: list[Judge]):
        self.mode, self.judges = mode, judges
        self.batch_size = max(j.batch_size for j in judges)

    def close(self) -> None:
        for judge in self.judges:
            judge.close()

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
