from ssrtune.data.schema import Record
from ssrtune.methods import METHODS, OWN_ANSWERS, source_shares
from tests.tiny_run import record_dicts


def select_targets(method: str, records, generations=None, judgments=None, restated=None, restated_judgments=None):
    """The method's rows from the own answers and one restatement, each with the judge's verdicts on it."""
    method = METHODS[method]
    return method.select(records, {source: (generations or {}, judgments or {}) if source == OWN_ANSWERS else
                                   (restated or {}, restated_judgments or {}) for source in method.candidates})


def test_ssr_uses_accepted_own_answers_and_gold_elsewhere():
    records = [Record.model_validate(r) for r in record_dicts()[:3]]
    generations = {"q1": {"response": "Blue, clearly."}, "q2": {"response": "Bob"}, "q3": {"response": "3"}}
    judgments = {"q1": {"verdict": "accept"}, "q2": {"verdict": "reject"}, "q3": {"verdict": "failed"}}
    rows = select_targets("ssr", records, generations, judgments)
    assert [(r["target"], r["source"]) for r in rows] == [("Blue, clearly.", "self"), ("Anna", "gold"),
                                                          ("Three", "gold")]
    assert [m["role"] for m in rows[0]["messages"]] == ["user"]  # the record's own turns: no system prompt added
    assert source_shares(rows) == {"gold": 2 / 3, "self": 1 / 3}
    sft = select_targets("sft", records, generations, judgments)
    assert [r["source"] for r in sft] == ["gold"] * 3 and [r["messages"] for r in sft] == [r["messages"] for r in rows]


def three_records():
    return [Record.model_validate(r) for r in record_dicts()[:3]]


def test_restating_methods_and_self_only():
    records = three_records()
    generations = {"q1": {"response": "Blue, clearly."}, "q2": {"response": "Bob"}, "q3": {"response": "3"}}
    judgments = {"q1": {"verdict": "accept"}, "q2": {"verdict": "reject"}, "q3": {"verdict": "failed"}}
    paraphrases = {"q2": {"response": "It was Anna."}, "q3": {"response": "Two cats."}}
    paraphrase_judgments = {"q2": {"verdict": "accept"}, "q3": {"verdict": "reject"}}
    s3ft = select_targets("s3ft", records, generations, judgments, paraphrases, paraphrase_judgments)
    assert [(r["target"], r["source"]) for r in s3ft] == [("Blue, clearly.", "self"), ("It was Anna.", "paraphrase"),
                                                          ("Three", "gold")]
    rewrites = {"q1": {"response": "Blue."}, "q2": {"response": "Anna wrote it."}, "q3": {"response": "Three."}}
    rewrite_judgments = {"q1": {"verdict": "accept"}, "q2": {"verdict": "failed"}, "q3": {"verdict": "accept"}}
    sdft = select_targets("sdft", records, generations, judgments, rewrites, rewrite_judgments)
    assert [(r["target"], r["source"]) for r in sdft] == [("Blue.", "rewrite"), ("Anna", "gold"),
                                                          ("Three.", "rewrite")]
    self_only = select_targets("self_only", records, generations, judgments)
    assert [(r["target"], r["source"]) for r in self_only] == [("Blue, clearly.", "self"), (None, "dropped"),
                                                               (None, "dropped")]
    assert source_shares(self_only) == {"dropped": 2 / 3, "self": 1 / 3}
    # without restatements, s3ft is ssr and sdft is sft
    assert select_targets("s3ft", records, generations, judgments) == select_targets("ssr", records, generations,
                                                                                     judgments)
    assert [r["source"] for r in select_targets("sdft", records, generations, judgments)] == ["gold"] * 3


def test_a_missing_restatement_uses_gold():
    rows = select_targets("sdft", three_records(), {}, {}, {}, {"q1": {"verdict": "accept"}})
    assert [r["source"] for r in rows] == ["gold"] * 3


def test_an_example_without_an_own_answer_trains_on_gold():
    # q2's generation request failed (no generation); a verdict left for it must not make it a self target.
    records = [Record.model_validate(r) for r in record_dicts()[:3]]
    generations = {"q1": {"response": "Blue."}}
    judgments = {"q1": {"verdict": "accept"}, "q2": {"verdict": "accept"}}
    rows = select_targets("ssr", records, generations, judgments)
    assert [(r["id"], r["target"], r["source"]) for r in rows] == [
        ("q1", "Blue.", "self"), ("q2", "Anna", "gold"), ("q3", "Three", "gold")]


def test_an_example_with_several_answers_trains_on_its_first_accepted_one():
    # a source that gives several answers per example names the example each answers
    records = three_records()
    answers = {"q1#0": {"example": "q1", "response": "Green."}, "q1#1": {"example": "q1", "response": "Blue."},
               "q1#2": {"example": "q1", "response": "Blue!"}, "q2#0": {"example": "q2", "response": "Bob"}}
    verdicts = {"q1#0": {"verdict": "reject"}, "q1#1": {"verdict": "accept"}, "q1#2": {"verdict": "accept"},
                "q2#0": {"verdict": "reject"}}
    rows = select_targets("ssr", records, answers, verdicts)
    assert [(r["id"], r["target"], r["source"]) for r in rows] == [
        ("q1", "Blue.", "self"), ("q2", "Anna", "gold"), ("q3", "Three", "gold")]


def test_the_dose_matched_control_trains_on_ssrs_gold_part_alone():
    records = three_records()
    generations = {"q1": {"response": "Blue, clearly."}, "q2": {"response": "Bob"}, "q3": {"response": "3"}}
    judgments = {"q1": {"verdict": "accept"}, "q2": {"verdict": "reject"}, "q3": {"verdict": "failed"}}
    control = select_targets("sft_rejected", records, generations, judgments)
    ssr = select_targets("ssr", records, generations, judgments)
    assert [(r["target"], r["source"]) for r in control] == [(None, "dropped"), ("Anna", "gold"), ("Three", "gold")]
    # exactly ssr's gold rows, and as many of them: the same dose of gold targets without ssr's own answers
    assert [r for r in control if r["source"] == "gold"] == [r for r in ssr if r["source"] == "gold"]
    assert source_shares(control) == {"dropped": 1 / 3, "gold": 2 / 3}
