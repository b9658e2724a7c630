import json

import pytest

from ssrtune.config.run import RecipeDataConfig
from ssrtune.data.loaders import load_records
from ssrtune.data.prompts import prompt_messages
from ssrtune.data.recipes.grounded import GROUNDED_QA_SYSTEM, REFUSAL
from ssrtune.data.recipes.squad import grounded_qa
from ssrtune.data.schema import DataError, Message, Record
from tests.tiny_run import record_dicts


def test_jsonl_roundtrip(records_file):
    records = load_records(records_file)
    assert [r.id for r in records] == ["q1", "q2", "q3", "q4", "q5", "q6"]
    assert records[0].query == "What colour is the sky?"


def test_json_csv_parquet_and_dataset_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    flat = [{"qid": r["id"], "question": r["messages"][0]["content"], "passage": r["context"],
             "answer": r["response"]} for r in record_dicts()]
    fields = {"id": "qid", "query": "question", "context": "passage", "response": "answer"}
    (tmp_path / "d.json").write_text(json.dumps(flat))
    with open(tmp_path / "d.csv", "w") as handle:
        handle.write("qid,question,passage,answer\n")
        for row in flat:
            handle.write(",".join(json.dumps(v) for v in row.values()) + "\n")
    pq.write_table(pa.Table.from_pylist(flat), tmp_path / "d.parquet")
    Dataset.from_list(flat).save_to_disk(str(tmp_path / "folder"))
    for name in ("d.json", "d.csv", "d.parquet", "folder"):
        records = load_records(tmp_path / name, fields)
        assert [r.id for r in records] == [r["qid"] for r in flat], name
        assert records[1].context == flat[1]["passage"] and records[1].response == "Anna"


@pytest.mark.parametrize("content, line, field", [
    ('{"id": "a", "messages": [{"role": "user", "content": "q"}], "response": "r"}\n{"id": "b", oops}\n', 2, None),
    ('{"id": "a", "messages": [{"role": "user", "content": "q"}]}\n', 1, "response"),
    ('{"id": "a", "messages": [{"role": "user", "content": "q"}], "response": "  "}\n', 1, "response"),
    ('{"id": "a", "messages": [{"role": "user", "content": "q"}], "response": 5}\n', 1, "response"),
    ('{"id": "a", "messages": [{"role": "assistant", "content": "q"}], "response": "r"}\n', 1, "messages"),
    ('{"id": "a", "query": "q", "response": "r"}\n{"id": "a", "query": "q2", "response": "r"}\n', 2, "id"),
    ('[1, 2]\n', 1, None),
])
def test_bad_records_name_file_line_and_field(tmp_path, content, line, field):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        load_records(path)
    message = str(err.value)
    assert str(path) in message and f"line {line}" in message
    if field:
        assert f"field '{field}" in message


def test_bad_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": "a", "query": "caf\xe9", "response": "r"}\n')
    (tmp_path / "ragged.csv").write_text("id,query,response\na,q,r\nb,q\n")
    (tmp_path / "data.txt").write_text("x")
    for name, problem in [("empty.jsonl", "no records"), ("latin1.jsonl", "UTF-8"), ("ragged.csv", "line 3"),
                          ("data.txt", "unknown format"), ("missing.jsonl", "no such file")]:
        with pytest.raises(DataError, match=problem):
            load_records(tmp_path / name)


def test_missing_mapped_field(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"question": "q", "answer": "a", "id": "1"}\n')
    with pytest.raises(DataError, match="line 1, field 'passage'"):
        load_records(tmp_path / "d.jsonl", {"query": "question", "response": "answer", "context": "passage"})


def test_the_prompt_puts_the_document_before_the_question_and_adds_no_system_turn():
    record = Record.model_validate(record_dicts()[0])  # a user's record: no system turn of its own
    assert prompt_messages(record) == [{"role": "user", "content": "Document:\nThe sky is blue on a clear day.\n\n"
                                                                   "Question: What colour is the sky?"}]
    own = record.model_copy(update={"messages": [Message(role="system", content="Be terse."), *record.messages]})
    assert prompt_messages(own)[0] == {"role": "system", "content": "Be terse."}


def test_grounded_qa_recipe():
    train, test = grounded_qa(RecipeDataConfig(n_train=60, n_test=30, seed=3))
    assert len(train) == 60 and len(test) == 30
    assert not {r.meta["title"] for r in train} & {r.meta["title"] for r in test}
    assert not {r.id for r in train} & {r.id for r in test}
    assert all(r.messages[0] == Message(role="system", content=GROUNDED_QA_SYSTEM) for r in train + test)
    unanswerable = [r for r in train + test if not r.meta["answerable"]]
    assert len(unanswerable) == 45
    for r in unanswerable:
        assert r.response == REFUSAL
    from ssrtune.data.recipes.squad import read_squad
    squad = {q["id"]: q for q in read_squad()}
    for r in unanswerable:
        q = squad[r.id]
        assert r.context != q["paragraph"]
        assert not any(a.lower() in r.context.lower() for a in q["answers"] if len(a) > 3)
    for r in train + test:
        if r.meta["answerable"]:
            assert r.context == squad[r.id]["paragraph"] and r.response in r.meta["answers"]
    again, _ = grounded_qa(RecipeDataConfig(n_train=60, n_test=30, seed=3))
    assert [r.id for r in again] == [r.id for r in train]


def test_a_dev_holdout_comes_from_training_articles_and_never_touches_the_test_articles():
    _, test = grounded_qa(RecipeDataConfig(n_train=60, n_test=30, seed=3))
    train, dev = grounded_qa(RecipeDataConfig(n_train=60, n_test=30, seed=3, holdout="dev"))
    test_titles, dev_titles = {r.meta["title"] for r in test}, {r.meta["title"] for r in dev}
    train_titles = {r.meta["title"] for r in train}
    assert dev_titles and not dev_titles & test_titles and not dev_titles & train_titles
    assert not train_titles & test_titles
    with pytest.raises(ValueError, match="only .* dev questions available, 900 asked for"):
        grounded_qa(RecipeDataConfig(n_train=60, n_test=900, seed=3, holdout="dev"))


def test_the_training_share_of_unanswerable_examples_leaves_the_held_out_split_as_it_was():
    train, test = grounded_qa(RecipeDataConfig(n_train=60, n_test=30, seed=3, train_unanswerable_fraction=0.25))
    _, same_test = grounded_qa(RecipeDataConfig(n_train=60, n_test=30, seed=3))
    assert sum(not r.meta["answerable"] for r in train) == 15
    assert [r.model_dump() for r in test] == [r.model_dump() for r in same_test]


def test_unanswerable_documents_come_from_the_same_article_or_from_another_one():
    from ssrtune.data.recipes.squad import read_squad

    title_of = {q["paragraph"]: q["title"] for q in read_squad()}
    for distractor, same in (("same_article", True), ("other_article", False)):
        train, _ = grounded_qa(RecipeDataConfig(n_train=60, n_test=10, seed=2, distractor=distractor))
        unanswerable = [r for r in train if not r.meta["answerable"]]
        assert len(unanswerable) == 30
        assert all((title_of[r.context] == r.meta["title"]) == same for r in unanswerable)


def test_documents_cut_to_a_sentence_window_keep_the_answer():
    from ssrtune.data.recipes.squad import _SENTENCE_END, read_squad
    from ssrtune.text import normalise

    full, _ = grounded_qa(RecipeDataConfig(n_train=120, n_test=10, seed=1))
    cut, _ = grounded_qa(RecipeDataConfig(n_train=120, n_test=10, seed=1, document_words=50))
    squad = {q["id"]: q for q in read_squad()}
    assert [r.id for r in cut] == [r.id for r in full]  # the same questions, only shorter documents
    shortened = 0
    for short, whole in zip(cut, full):
        assert short.context in whole.context  # consecutive whole sentences of the same paragraph
        shortened += short.context != whole.context
        # at most 50 words, unless the sentence holding the answer is longer (kept whole)
        assert len(short.context.split()) <= 50 or len(_SENTENCE_END.split(short.context)) == 1
        if short.meta["answerable"]:
            text = f" {normalise(short.context, drop_articles=False)} "
            assert any(f" {normalise(a, drop_articles=False)} " in text for a in squad[short.id]["answers"])
    assert shortened > 60


def test_a_sentence_window_grows_around_the_answer_sentence():
    import random

    from ssrtune.data.recipes.squad import sentence_window

    paragraph = "One two three. Four five six. The answer is Paris here. Seven eight. Nine ten eleven twelve."
    assert sentence_window(paragraph, ["Paris"], 5, random.Random(0)) == "The answer is Paris here."
    assert sentence_window(paragraph, ["Paris"], 7, random.Random(0)) == "The answer is Paris here. Seven eight."
    assert sentence_window(paragraph, ["Paris"], 10, random.Random(0)) == (
        "Four five six. The answer is Paris here. Seven eight.")
    assert sentence_window(paragraph, ["Paris"], 2, random.Random(0)) == "The answer is Paris here."  # kept whole
    no_answer = sentence_window(paragraph, [], 6, random.Random(0))
    assert no_answer in paragraph and len(no_answer.split()) <= 6


def test_a_users_extra_columns_are_kept_in_meta(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,question,answer,difficulty,source\n1,What is 2 + 2?,4,easy,quiz\n", encoding="utf-8")
    [record] = load_records(path, {"query": "question", "response": "answer"})
    assert record.meta == {"difficulty": "easy", "source": "quiz"} and record.query == "What is 2 + 2?"
    rows = tmp_path / "d.jsonl"
    rows.write_text(json.dumps({"id": "1", "query": "q", "response": "r", "level": 3, "meta": {"level": 4}}) + "\n")
    assert load_records(rows)[0].meta == {"level": 4}  # the record's own meta wins over a column of the same name


def test_a_typo_in_a_mapped_field_name_is_still_an_error():
    from ssrtune.config.run import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"data.fields: 'respnse' is not a record field"):
        load_config(None, ["data.recipe=null", "data.train_file=a.jsonl", "data.test_file=a.jsonl",
                           "data.fields={respnse: answer}"])
    with pytest.raises(ConfigError, match=r"evaluate.datasets.0.fields: 'qestion' is not a record field"):
        load_config(None, ["evaluate.datasets=[{name: mine, file: a.jsonl, fields: {qestion: q}}]"])


def test_data_system_prompt_is_the_system_turn_of_records_without_one(tmp_path):
    from ssrtune.config.run import load_config
    from ssrtune.stages.data import prepare

    rows = record_dicts()
    rows[1]["messages"] = [{"role": "system", "content": "Its own."}, *rows[1]["messages"]]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    files = ["data.recipe=null", f"data.train_file={path}", f"data.test_file={path}"]
    train, _ = prepare(load_config(None, files).data)
    assert [r.messages[0].role for r in train[:3]] == ["user", "system", "user"]  # none is added by default
    train, test = prepare(load_config(None, [*files, "data.system_prompt=Show your working."]).data)
    assert [r.messages[0].content for r in train[:3]] == ["Show your working.", "Its own.", "Show your working."]
    assert test == train
