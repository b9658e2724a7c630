import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssrtune.data.recipes.grounded import REFUSAL
from ssrtune.judges.base import JudgeInput
from ssrtune.judges.factory import build_judge
from ssrtune.config.judges import grounded_qa_judge, parse_judge
from ssrtune.stages.judge import judge_all
from ssrtune.storage.artifacts import RecordFile
from ssrtune.text import final_number, is_refusal, normalise, token_f1


def JudgeConfig(**settings):
    return parse_judge(settings)


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


# --- the answer-matching rules ----------------------------------------------------------------------------------

def verdicts(config: JudgeConfig, items) -> list[str]:
    return [j.verdict for j in build_judge(config).judge(items)]


def test_exact_ignores_case_punctuation_articles_and_unicode_forms():
    config = JudgeConfig(kind="exact")
    assert verdicts(config, [
        item("saint  bernadette!"), item("The Saint-Bernadette."), item("ＳＡＩＮＴ Bernadette"),
        item("Saint Bernadette Soubirous"), item(""), item("Zoë", gold="zoe\u0308"),
    ]) == ["accept", "accept", "accept", "reject", "reject", "accept"]


def test_gold_without_words_fails_instead_of_matching_everything():
    # a gold answer of punctuation only normalises to nothing: the rule can't decide, so the example uses gold
    for kind in ("exact", "contains", "token_f1", "recall"):
        assert verdicts(JudgeConfig(kind=kind), [item("anything", gold="?!")]) == ["failed"], kind


@pytest.mark.parametrize("kind,threshold,expected", [
    ("token_f1", 0.5, ["accept", "accept", "reject", "reject"]),
    ("token_f1", 0.9, ["accept", "reject", "reject", "reject"]),
    ("recall", 0.5, ["accept", "accept", "accept", "reject"]),
    ("recall", 1.0, ["accept", "reject", "accept", "reject"]),
])
def test_token_scores_with_thresholds(kind, threshold, expected):
    items = [
        item("Saint Bernadette"),                                          # f1 1, recall 1
        item("saint bernadette", gold="Saint Bernadette Soubirous"),       # f1 0.8, recall 2/3
        item("It was, in the end, saint Bernadette who appeared to them"),  # f1 ~0.33, recall 1
        item("nobody", gold="Saint Bernadette"),                           # 0
    ]
    assert verdicts(JudgeConfig(kind=kind, threshold=threshold), items) == expected


def test_token_f1_by_hand_and_scores_recorded():
    assert token_f1("x b c", ["b c d e"]) == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert token_f1("", ["b"]) == 0.0 and token_f1("x", [""]) == 0.0
    judgment = build_judge(JudgeConfig(kind="token_f1")).judge([item("Saint Bernadette")])[0]
    assert judgment.score == 1.0 and "token_f1 1.000" in judgment.rationale


@pytest.mark.parametrize("text,number", [
    ("The answer is 1,234.", "1234"), ("#### 72", "72"), ("She paid $1,000,000.50 in total", "1000000.5"),
    ("It fell to -3 degrees", "-3"), ("from 1990-1995", "1995"), ("Natalia sold 48/2 = 24 clips\n#### 24", "24"),
    ("\u2212 7 is not a number but \u22127 is", "-7"), ("１２ apples", "12"), ("٧٢", "72"),
    ("1,2345", "2345"), ("no digits here", None), ("", None), ("#### 5 and later 6", "5"),
    ("it costs $18.50 then 3.0", "3"), ("So the answer is 1,000.00", "1000"), ("-0.0", "0"),
])
def test_final_number(text, number):
    assert final_number(text) == number


def test_numeric_judge_gsm8k_style():
    gold = "She sold 48 + 24 = 72 clips.\n#### 72"
    config = JudgeConfig(kind="numeric")
    assert verdicts(config, [item("So the answer is 72.", gold=gold), item("72.0", gold=gold),
                             item("It is 71", gold=gold), item("seventy-two", gold=gold),
                             item("That costs 12,500 dollars", gold="12500"), item("12", gold="no number"),
                             ]) == ["accept", "accept", "reject", "reject", "accept", "failed"]
    assert verdicts(JudgeConfig(kind="numeric", tolerance=0.5), [item("3.4", gold="3")]) == ["accept"]


def test_regex_judge_with_and_without_a_group():
    found = JudgeConfig(kind="regex", pattern=r"answer:\s*(.+)$")
    assert verdicts(found, [item("Answer: the Saint Bernadette"), item("answer: Lourdes"),
                            item("Saint Bernadette")]) == ["accept", "reject", "reject"]
    shape = JudgeConfig(kind="regex", pattern=r"^\d{4}$", ignore_case=False)
    assert verdicts(shape, [item("1858"), item("in 1858"), item("１８５８")]) == ["accept", "reject", "accept"]


def test_answer_rules_leave_gold_refusals_to_the_refusal_judge():
    for kind in ("exact", "token_f1", "recall", "numeric"):
        assert verdicts(JudgeConfig(kind=kind), [item("anything", gold=REFUSAL)]) == ["accept"]
        assert verdicts(JudgeConfig(kind=kind, skip_refusals=False), [item("7", gold=REFUSAL)]) != ["accept"]


@given(st.text(max_size=40))
def test_normalise_is_idempotent_and_ignores_case_and_spacing(text):
    once = normalise(text)
    assert normalise(once) == once
    assert normalise(text.lower()) == once
    assert normalise(f"  {text}\t") == once and "  " not in once


@given(st.text(min_size=1, max_size=30).filter(lambda t: normalise(t)))
def test_exact_accepts_itself_under_any_decoration(answer):
    decorated = f"  The {answer.lower()}!!  "
    assert verdicts(JudgeConfig(kind="exact", skip_refusals=False), [item(decorated, gold=answer)]) == ["accept"]


@given(st.integers(min_value=-10**12, max_value=10**12), st.sampled_from(["{:,}", "{}", "{:,}.00"]))
def test_final_number_reads_formatted_integers(number, pattern):
    assert final_number(f"The total is {pattern.format(number)}.") == str(number)


def test_judge_all_refuses_an_answer_that_changed_under_its_verdict(tmp_path):
    from ssrtune.storage.artifacts import StaleArtifactError

    judge = build_judge(grounded_qa_judge())
    judge_all(judge, [item("Saint Bernadette", id="1")], RecordFile(tmp_path / "j.jsonl", "fp"))
    grown = judge_all(judge, [item("Saint Bernadette", id="1"), item("Lourdes", id="2")],
                      RecordFile(tmp_path / "j.jsonl", "fp"))
    assert [grown[i]["verdict"] for i in ("1", "2")] == ["accept", "reject"]
    with pytest.raises(StaleArtifactError, match="--fresh"):
        judge_all(judge, [item("Lourdes", id="1")], RecordFile(tmp_path / "j.jsonl", "fp"))
