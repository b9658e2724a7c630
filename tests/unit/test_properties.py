"""Property-based tests (hypothesis) over the loaders, the prompt truncation rule and the rule judges' text
normalisation."""

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ssrtune.data.loaders import load_records
from ssrtune.data.recipes.grounded import GROUNDED_QA_SYSTEM, REFUSAL
from ssrtune.data.schema import DataError, Record
from ssrtune.text import contained_answer, is_refusal, normalise

# Any text a UTF-8 file can hold (no lone surrogates); CSV cells additionally without NUL.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
CELL = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)
NON_BLANK = CELL.filter(lambda t: t.strip() != "")

ROWS = st.lists(st.fixed_dictionaries({"query": NON_BLANK, "context": CELL, "response": NON_BLANK}),
                min_size=1, max_size=6)
FIELDS = {"id": "key", "query": "question", "context": "passage", "response": "answer"}
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def write(rows: list[dict], fmt: str, folder: Path) -> Path:
    flat = [{"key": f"id-{i}", "question": r["query"], "passage": r["context"], "answer": r["response"]}
            for i, r in enumerate(rows)]
    path = folder / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in flat), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(flat, ensure_ascii=False), encoding="utf-8")
    else:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
        path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return path


@PROPERTY
@given(rows=ROWS, fmt=st.sampled_from(["jsonl", "json", "csv"]))
def test_any_valid_records_round_trip_through_every_text_format(rows, fmt):
    with tempfile.TemporaryDirectory() as folder:
        records = load_records(write(rows, fmt, Path(folder)), FIELDS)
    assert [r.id for r in records] == [f"id-{i}" for i in range(len(rows))]
    for record, row in zip(records, rows):
        assert (record.query, record.response) == (row["query"], row["response"])
        assert (record.context or "") == row["context"]


@PROPERTY
@given(content=st.one_of(st.binary(max_size=300), TEXT.map(lambda t: t.encode("utf-8"))),
       fmt=st.sampled_from(["jsonl", "json", "csv"]), skip=st.booleans())
def test_arbitrary_bytes_give_records_or_a_located_data_error(content, fmt, skip):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"x.{fmt}"
        path.write_bytes(content)
        skipped: list[DataError] | None = [] if skip else None
        try:
            records = load_records(path, skipped=skipped)
        except DataError as err:
            assert str(err).startswith(str(path))
            return
    assert records and all(isinstance(r, Record) for r in records)
    assert all(str(e).startswith(f"{path}, line ") for e in skipped or [])


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_normalise_is_idempotent_and_clean(text):
    once = normalise(text)
    assert normalise(once) == once
    assert once == " ".join(once.split())
    assert not set(once.split()) & {"a", "an", "the"}


@settings(max_examples=300, deadline=None)
@given(answer=TEXT, before=TEXT, after=TEXT)
def test_an_answer_is_found_inside_any_surrounding_text(answer, before, after):
    assume(normalise(answer))
    assert contained_answer(f"{before} {answer} {after}", [answer]) == answer
    assert contained_answer(f"{before} {answer.upper()} {after}", [answer]) == answer or \
        normalise(answer.upper()) != normalise(answer)


@settings(max_examples=300, deadline=None)
@given(candidate=TEXT, answers=st.lists(TEXT, max_size=4))
def test_contained_answer_returns_one_of_the_answers_present_as_words(candidate, answers):
    found = contained_answer(candidate, answers)
    if found is not None:
        assert found in answers and normalise(found)
        assert f" {normalise(found)} " in f" {normalise(candidate)} "
    else:
        assert all(not normalise(a) or f" {normalise(a)} " not in f" {normalise(candidate)} " for a in answers)


REFUSALS = [REFUSAL, "The document does not mention it.", "I don't know.", "That is not in the passage.",
            "There is not enough information to say.", "This question is unanswerable."]


@settings(max_examples=200, deadline=None)
@given(refusal=st.sampled_from(REFUSALS), before=TEXT, after=TEXT, upper=st.booleans(),
       spacing=st.sampled_from([" ", "  ", "\n", "\t "]))
def test_a_refusal_is_recognised_whatever_its_case_spacing_and_surroundings(refusal, before, after, upper,
                                                                            spacing):
    text = spacing.join(refusal.upper().split() if upper else refusal.split())
    assert is_refusal(f"{before}\n{text}\n{after}")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(categories=("Nd", "Lu", "Ll", "Zs")), max_size=40))
def test_plain_words_without_refusal_phrases_are_answers(text):
    assume(not any(w in text.lower() for w in ("not", "cannot", "unable", "unanswerable", "know", "no ", "n't")))
    assert not is_refusal(text)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@PROPERTY
@given(words=st.integers(0, 300), question=st.sampled_from(["What colour is the sky?", "Who wrote it?"]),
       answer=st.sampled_from(["blue", "Anna in Paris", REFUSAL]), limit=st.integers(40, 400),
       train=st.booleans())
def test_truncation_cuts_only_the_document(tokenizer, words, question, answer, limit, train):
    from ssrtune.data.prompts import PromptTooLongError, fit_prompt, prompt_messages

    context = " ".join(["The sky is blue on a clear day."] * words) or None
    record = Record(id="r", messages=[{"role": "system", "content": GROUNDED_QA_SYSTEM},
                                      {"role": "user", "content": question}], context=context, response=answer)
    completion, reserve = (answer, 0) if train else (None, 8)
    try:
        messages, cut = fit_prompt(record, tokenizer, limit, completion, reserve)
    except PromptTooLongError:
        bare, _ = fit_prompt(record.model_copy(update={"context": "The"}), tokenizer, 10_000, completion, reserve)
        tail = [{"role": "assistant", "content": answer}] if train else []
        assert len(tokenizer.apply_chat_template(bare + tail, tokenize=True, return_dict=False,
                                                 add_generation_prompt=not train)) + reserve > limit - 2
        return
    full = prompt_messages(record)
    assert messages[0] == full[0]  # the system prompt is whole
    assert messages[-1]["content"].endswith(f"\n\nQuestion: {question}") or messages == full
    if cut:
        document = messages[-1]["content"].removeprefix("Document:\n").rsplit("\n\nQuestion: ", 1)[0]
        assert context.startswith(document.rstrip("\ufffd")) and len(document) < len(context)
    else:
        assert messages == full
    tail = [{"role": "assistant", "content": answer}] if train else []
    n = len(tokenizer.apply_chat_template(messages + tail, tokenize=True, return_dict=False,
                                          add_generation_prompt=not train))
    assert n + reserve <= limit
