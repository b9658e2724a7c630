import pytest

from ssrtune.config import JudgeConfig, grounded_qa_judge
from ssrtune.data import REFUSAL
from ssrtune.judge import JudgeInput, build_judge, is_refusal, judge_all, normalise
from ssrtune.store import RecordFile


def item(candidate, gold="Saint Bernadette", answers=None, id="x"):
    return JudgeInput(id, "q", "ctx", gold, candidate, answers or [gold])


@pytest.mark.parametrize("text", [
    REFUSAL, "I can't answer that from the text.", "The document doesn't mention it.",
    "This is not mentioned in the passage.", "There is no information about the ship.", "Unanswerable.",
    "I don\u2019t know.", "The answer cannot be determined from the document.",
])
def test_refusals_are_detected(text):
    assert is_refusal(text)


@pytest.mark.parametrize("text", ["Saint Bernadette", "In 1858.", "The document states that it was 23 years.",
                                  "Known as the answer", ""])
def test_answers_are_not_refusals(text):
    assert not is_refusal(text)


def test_normalise_drops_case_punctuation_articles_and_unifies_unicode():
    assert normalise("The  Virgin-Mary's ＡＢＣ!") == "virgin mary s abc"
    assert normalise("") == ""


def test_refusal_judge():
    judge = build_judge(JudgeConfig(kind="refusal"))
    verdicts = judge.judge([item(REFUSAL, gold=REFUSAL), item("Paris", gold=REFUSAL), item("I cannot answer that."),
                            item("Paris")])
    assert [v.verdict for v in verdicts] == ["accept", "reject", "reject", "accept"]
    assert verdicts[1].rationale == "gold refuses, candidate answers"


def test_contains_judge_uses_whole_words_and_alternatives():
    judge = build_judge(JudgeConfig(kind="contains"))
    verdicts = judge.judge([
        item("It was saint bernadette, in 1858."),
        item("23 years", gold="23", answers=["twenty-three", "23"]),
        item("1230", gold="23"),
        item("", gold="23"),
        item("whatever", gold=REFUSAL),
    ])
    assert [v.verdict for v in verdicts] == ["accept", "accept", "reject", "reject", "accept"]
    strict = build_judge(JudgeConfig(kind="contains", skip_refusals=False))
    assert strict.judge([item("whatever", gold=REFUSAL)])[0].verdict == "reject"


def test_grounded_qa_judge_combines_refusal_and_contains():
    judge = build_judge(grounded_qa_judge())
    verdicts = judge.judge([
        item("Saint Bernadette Soubirous"),
        item("I cannot answer this from the document, maybe Saint Bernadette"),
        item("Lourdes"),
        item("The document does not say.", gold=REFUSAL),
        item("Lourdes", gold=REFUSAL),
    ])
    assert [v.verdict for v in verdicts] == ["accept", "reject", "reject", "accept", "reject"]
    assert verdicts[0].rationale.startswith("all: accept")


def test_any_accepts_when_one_child_accepts():
    judge = build_judge(JudgeConfig(kind="any", judges=[JudgeConfig(kind="contains"), JudgeConfig(kind="refusal")]))
    assert [v.verdict for v in judge.judge([item("Lourdes"), item("no")])] == ["accept", "accept"]
    judge = build_judge(JudgeConfig(kind="any", judges=[JudgeConfig(kind="contains")]))
    assert judge.judge([item("Lourdes")])[0].verdict == "reject"


def test_judge_all_is_resumable(tmp_path):
    judge = build_judge(grounded_qa_judge())
    items = [item("Saint Bernadette", id=str(i)) for i in range(5)]
    out = RecordFile(tmp_path / "j.jsonl", "fp")
    judge_all(judge, items[:2], out)
    again = RecordFile(tmp_path / "j.jsonl", "fp")
    records = judge_all(judge, items, again, batch_size=2)
    assert sorted(records) == ["0", "1", "2", "3", "4"]
    assert len((tmp_path / "j.jsonl").read_text().splitlines()) == 5
    assert records["3"]["verdict"] == "accept" and "rationale" in records["3"]
