import pytest

from ssrtune.data import Record
from ssrtune.select import select_targets, source_shares
from tests.conftest import record_dicts


def test_ssr_uses_accepted_own_answers_and_gold_elsewhere():
    records = [Record.model_validate(r) for r in record_dicts()[:3]]
    generations = {"q1": {"response": "Blue, clearly."}, "q2": {"response": "Bob"}, "q3": {"response": "3"}}
    judgments = {"q1": {"verdict": "accept"}, "q2": {"verdict": "reject"}, "q3": {"verdict": "failed"}}
    rows = select_targets("ssr", records, generations, judgments)
    assert [(r["target"], r["source"]) for r in rows] == [("Blue, clearly.", "self"), ("Anna", "gold"),
                                                          ("Three", "gold")]
    assert rows[0]["messages"][0]["role"] == "system" and rows[0]["messages"][-1]["role"] == "user"
    assert source_shares(rows) == {"gold": 2 / 3, "self": 1 / 3}
    sft = select_targets("sft", records, generations, judgments)
    assert [r["source"] for r in sft] == ["gold"] * 3 and [r["messages"] for r in sft] == [r["messages"] for r in rows]


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        select_targets("dpo", [], {}, {})


def test_an_example_without_an_own_answer_trains_on_gold():
    # q2's generation request failed (no generation); a verdict left for it must not make it a self target.
    records = [Record.model_validate(r) for r in record_dicts()[:3]]
    generations = {"q1": {"response": "Blue."}}
    judgments = {"q1": {"verdict": "accept"}, "q2": {"verdict": "accept"}}
    rows = select_targets("ssr", records, generations, judgments)
    assert [(r["id"], r["target"], r["source"]) for r in rows] == [
        ("q1", "Blue.", "self"), ("q2", "Anna", "gold"), ("q3", "Three", "gold")]
