import pytest

from ssrtune.data.prompts import REFUSAL
from ssrtune.data.schema import Record
from ssrtune.qa_metrics import score_example, task_metrics
from ssrtune.text import token_recall


def test_token_recall_by_hand():
    assert token_recall("It was the convecting mantle.", ["the convecting mantle"]) == 1.0
    assert token_recall("the mantle", ["convecting mantle"]) == 0.5
    assert token_recall("nothing", ["b c", "nothing at all"]) == pytest.approx(1 / 3)
    assert token_recall("x", [""]) == 0.0


def make(id, answerable, gold):
    return Record(id=id, messages=[{"role": "user", "content": "q"}], context="c", response=gold,
                  meta={"answerable": answerable, "answers": [gold] if answerable else []})


def test_task_metrics_by_hand():
    rows = [
        score_example(make("a", True, "blue sky"), "The blue sky."),      # recall 1, correct
        score_example(make("b", True, "blue sky"), "Blue."),              # recall .5, wrong
        score_example(make("c", True, "blue sky"), REFUSAL),              # refused: recall 0, false positive
        score_example(make("d", False, REFUSAL), REFUSAL),                # true positive
        score_example(make("e", False, REFUSAL), "Paris"),                # missed
    ]
    m = task_metrics(rows)
    assert m["n"] == 5 and m["n_answerable"] == 3 and m["n_unanswerable"] == 2
    assert m["answerable_recall"] == pytest.approx(0.5)
    assert m["answerable_accuracy"] == pytest.approx(1 / 3)
    assert m["unanswerable_precision"] == pytest.approx(1 / 2)
    assert m["unanswerable_recall"] == pytest.approx(1 / 2)
    assert m["unanswerable_f1"] == pytest.approx(1 / 2)
    assert m["accuracy"] == pytest.approx(2 / 5)


def test_empty_classes_do_not_divide_by_zero():
    m = task_metrics([score_example(make("a", True, "x"), "x")])
    assert m["unanswerable_f1"] == 0.0 and m["accuracy"] == 1.0
