"""Reading answers: normalisation, containment, token overlap, the final number, and refusal detection.

One copy each, shared by the judges, the task metrics, the retention scoring and the data recipes.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from decimal import Decimal

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


def normalise(text: str, drop_articles: bool = True) -> str:
    """SQuAD-style normalisation: NFKC, lower case, no punctuation, no articles, single spaces.

    `drop_articles=False` keeps the articles, for a check of whether an answer occurs in a passage: dropping them
    there would join words that are not next to each other in the text.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    if drop_articles:
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
# optional decimal part. `\d` also matches other scripts' digits, which `Decimal` reads.
_NUMBER_RE = re.compile(r"(?:(?<![\w.])[-\u2212])?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


def final_number(text: str) -> str | None:
    """The last number in the text, or the first after the last GSM8K `####` marker when there is one, written
    plainly: ASCII digits, no thousands separators, no trailing zero fraction ("1,000.00" -> "1000"), as
    lm-evaluation-harness's flexible-extract filter compares them."""
    text = unicodedata.normalize("NFKC", text)
    marker = text.rfind("####")
    if marker >= 0:
        found = _NUMBER_RE.search(text, marker + 4)
        numbers = [found.group(0)] if found else []
    else:
        numbers = _NUMBER_RE.findall(text)
    if not numbers:
        return None
    plain = format(Decimal(numbers[-1].replace(",", "").replace("\u2212", "-")), "f")
    if "." in plain:
        plain = plain.rstrip("0").rstrip(".")
    return "0" if plain == "-0" else plain


def is_refusal(text: str) -> bool:
    # Whitespace collapsed: a refusal wrapped over two lines is still one.
    text = " ".join(unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").split())
    return bool(_REFUSAL_RE.search(text))
