"""Task metrics from judged answers, and the default judge reproducing the grounded-QA scoring it replaced."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssrtune.config.run import RecipeDataConfig
from ssrtune.config.evaluate import OodConfig
from ssrtune.data.recipes.grounded import REFUSAL
from ssrtune.data.recipes.coqa import conversational_qa
from ssrtune.data.recipes.squad import grounded_qa
from ssrtune.data.schema import Record
from ssrtune.judges.base import JudgeInput
from ssrtune.config.judges import grounded_qa_judge
from ssrtune.judges.factory import build
from ssrtune.evaluation.qa_metrics import has_unanswerable, judged_rows, task_metrics
from ssrtune.text import is_refusal, token_recall

from tests.grounded_scoring import grounded_qa_correct
from tests.tiny_run import record_dicts


def score(records, predictions, judge=None):
    """judged rows and metrics, as the evaluation makes them (less its files)."""
    judge = build(judge or grounded_qa_judge())
    texts = dict(zip([r.id for r in records], predictions))
    verdicts = {r.id: {"verdict": j.verdict, "rationale": j.rationale, "score": j.score}
                for r, j in zip(records, judge.judge([JudgeInput.of(r, texts[r.id]) for r in records]))}
    grounded = has_unanswerable(records)
    rows = judged_rows(records, texts, verdicts, grounded)
    return rows, task_metrics(rows, grounded)


def test_token_recall_by_hand():
    assert token_recall("It was the convecting mantle.", ["the convecting mantle"]) == 1.0
    assert token_recall("the mantle", ["convecting mantle"]) == 0.5
    assert token_recall("nothing", ["b c", "nothing at all"]) == pytest.approx(1 / 3)
    assert token_recall("x", [""]) == 0.0


def make(id, answerable, gold):
    return Record(id=id, messages=[{"role": "user", "content": "q"}], context="c", response=gold,
                  meta={"answerable": answerable, "answers": [gold] if answerable else []})


def test_task_metrics_by_hand():
    rows, m = score([make("a", True, "blue sky"), make("b", True, "blue sky"), make("c", True, "blue sky"),
                     make("d", False, REFUSAL), make("e", False, REFUSAL)],
                    ["The blue sky.",  # recall 1, correct
                     "Blue.",  # recall .5, wrong
                     REFUSAL,  # refused: recall 0, false positive
                     REFUSAL,  # true positive
                     "Paris"])  # missed
    assert [r["correct"] for r in rows] == [True, False, False, True, False]
    assert m["n"] == 5 and m["n_answerable"] == 3 and m["n_unanswerable"] == 2
    assert m["answerable_recall"] == pytest.approx(0.5)
    assert m["answerable_accuracy"] == pytest.approx(1 / 3)
    assert m["unanswerable_precision"] == pytest.approx(1 / 2)
    assert m["unanswerable_recall"] == pytest.approx(1 / 2)
    assert m["unanswerable_f1"] == pytest.approx(1 / 2)
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["verdicts"] == {"accept": 2, "reject": 3, "failed": 0}
    low, high = m["accuracy_ci95"]
    assert 0 < low < 2 / 5 < high < 1


def test_data_without_unanswerable_examples_gets_accuracy_only():
    rows, m = score([make("a", True, "x")], ["x"])
    assert m["accuracy"] == 1.0 and "unanswerable_f1" not in m and "answerable" not in rows[0]


def test_a_failed_verdict_is_not_accepted_and_is_counted():
    records = [make("a", True, "no number here"), make("b", True, "#### 7")]
    rows, m = score(records, ["42", "so 7"], {"kind": "numeric"})
    assert [r["verdict"] for r in rows] == ["failed", "accept"]
    assert m["accuracy"] == 0.5 and m["verdicts"] == {"accept": 1, "reject": 0, "failed": 1}


def predictions_for(records: list[Record]) -> list[list[str]]:
    """Answers of every kind the evaluation meets: the gold answer bare, inside a sentence, decorated, cut short,
    refused, someone else's answer, a refusal that names the answer, an empty answer."""
    golds = [r.response for r in records]
    kinds = [lambda r, i: r.response, lambda r, i: f"According to the document, it is {r.response}.",
             lambda r, i: f"**{r.response.upper()}!**", lambda r, i: r.response.split()[0][:3],
             lambda r, i: REFUSAL, lambda r, i: golds[(i + 1) % len(golds)],
             lambda r, i: f"The document does not say; maybe {r.response}.", lambda r, i: ""]
    return [[kind(r, i) for i, r in enumerate(records)] for kind in kinds]


def test_the_default_judge_accepts_what_grounded_qa_scoring_counted_correct():
    """The default grounded-qa run keeps its numbers: on the recipe's test split and the out-of-domain set, with
    answers of every kind, the run's default judge accepts exactly what the old scoring counted correct."""
    _, test = grounded_qa(RecipeDataConfig(n_train=10, n_test=40, seed=3))
    ood = conversational_qa(OodConfig(n=40, seed=3))
    fixture = [Record.model_validate(r) for r in record_dicts()]
    for records in (test, ood, fixture):
        assert has_unanswerable(records)
        for predictions in predictions_for(records):
            rows, metrics = score(records, predictions)
            expected = [grounded_qa_correct(r, p) for r, p in zip(records, predictions)]
            assert [row["correct"] for row in rows] == expected
            assert metrics["accuracy"] == pytest.approx(sum(expected) / len(records))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["blue", "sky", "the", "Blue sky", REFUSAL, "I don't know", "cannot", "answer",
                                 "no information", "blue-sky", "", "Anna", ".", "3"]), max_size=6),
       st.sampled_from(["blue sky", "Anna", "3 cats", REFUSAL]), st.booleans())
def test_the_default_judge_matches_the_old_scoring_on_any_answer(words, gold, answerable_by_meta):
    meta = {"answers": [gold]} | ({"answerable": not is_refusal(gold)} if answerable_by_meta else {})
    record = Record(id="a", messages=[{"role": "user", "content": "q"}], context="c", response=gold, meta=meta)
    prediction = " ".join(words)
    rows, _ = score([record], [prediction])
    assert rows[0]["correct"] == grounded_qa_correct(record, prediction)
