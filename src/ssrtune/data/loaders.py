"""Loading the user's task files (JSONL, JSON, CSV, Parquet, Hugging Face dataset folders, Hub datasets) into
records, with every bad row located by file, line and field."""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ssrtune.config.errors import error_words
from ssrtune.data.formats import ShapeError, reshape
from ssrtune.data.hub import hub_dataset, is_hub
from ssrtune.data.schema import MAPPABLE_FIELDS, DataError, Record
from ssrtune.storage.fingerprints import fingerprint
from ssrtune.storage.artifacts import BadLine, jsonl_rows, write_jsonl

log = logging.getLogger(__name__)


# The csv module refuses a field over 128 KiB by default, and a document can be longer. Its limit is process-wide;
# ssrtune's reader sets it to the largest value every platform takes (a C long on Windows).
CSV_FIELD_LIMIT = 2**31 - 1


def _decoded(path: Path, data: bytes) -> str:
    """The UTF-8 text of a whole file (less a byte order mark); a bad byte is located by its line."""
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataError(path, line, None, f"not UTF-8 text ({err.reason} at byte {err.start})") from None


def _deepest_line(text: str) -> int:
    """The line where a JSON text is nested deepest (brackets outside strings), for a parser that gave up there."""
    depth = deepest = 0
    line = where = 1
    in_string = escaped = False
    for char in text:
        if in_string:
            in_string = escaped or char != '"'
            escaped = not escaped and char == "\\"
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, line
        elif char in "]}":
            depth -= 1
        line += char == "\n"
    return where


def _json_rows(path: Path) -> list:
    text = _decoded(path, path.read_bytes())  # the json module has no streaming parser
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, err.lineno, None, f"invalid JSON ({err.msg})") from None
    except RecursionError:
        raise DataError(path, _deepest_line(text), None, "JSON nested too deeply to read") from None
    if isinstance(rows, dict) and isinstance(rows.get("data"), list):
        rows = rows["data"]
    if not isinstance(rows, list):
        raise DataError(path, None, None, "a JSON file must hold a list of records (or {'data': [...]})")
    return rows


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows read as the file streams, each numbered by its last line; a row the csv module cannot read is that row's
    error (the module goes on with the next line)."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    lines = 0

    def counted(text: Iterable[str]) -> Iterator[str]:
        nonlocal lines
        for line in text:
            lines += 1
            yield line

    with open(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        reader = csv.DictReader(counted(text))
        try:
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as err:
                    yield lines, DataError(path, lines, None, f"unreadable CSV ({err})")
                    continue
                if None in row or None in row.values():
                    yield lines, DataError(path, lines, None, "row has a different number of cells than the header")
                else:
                    yield lines, row
        except UnicodeDecodeError:
            _decoded(path, path.read_bytes())  # raises the error, located by its line
            raise


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):  # a row group at a time, not the whole table
        for row in batch.to_pylist():
            number += 1
            yield number, row


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or row number, raw row or the row's `DataError`) for each row of a JSONL, JSON, CSV, Parquet file or
    HF dataset folder. Problems of one row are yielded, so that the caller decides to raise or skip; problems of
    the whole file are raised. JSONL, CSV and Parquet are read as they stream; a JSON file is read whole."""
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
    if suffix in (".jsonl", ".jsonl.gz"):
        for number, row in jsonl_rows(path):
            yield number, DataError(path, number, None, str(row)) if isinstance(row, BadLine) else row
    elif suffix == ".json":
        yield from enumerate(_json_rows(path), start=1)
    elif suffix == ".csv":
        yield from _csv_rows(path)
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        raise DataError(path, None, None, "unknown format; use .jsonl, .json, .csv, .parquet or a dataset folder")


def _readable_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """`read_rows`, with a library's error on a corrupt file (a cut .gz, a broken Parquet or dataset folder) turned
    into a `DataError` naming the file."""
    try:
        yield from read_rows(path)
    except DataError:
        raise
    except (OSError, EOFError, ValueError) as err:
        raise DataError(path, None, None, f"unreadable ({type(err).__name__}: {err})") from None


def _to_record(raw: Any, fields: dict[str, str], format: str, path: Path, line: int) -> tuple[Record, bool]:
    """The record of one raw row, and whether its id was made from its content (the row had none)."""
    if not isinstance(raw, dict):
        raise DataError(path, line, None, f"expected an object, got {type(raw).__name__}")
    try:
        raw = reshape(raw, format)
    except ShapeError as err:
        raise DataError(path, line, err.field, f"{err} (data.format: {format})") from None
    row = {ours: raw[theirs] for ours, theirs in fields.items() if theirs in raw}
    row.update({k: v for k, v in raw.items() if k not in fields.values() and k not in row})
    extra = {k: row.pop(k) for k in [k for k in row if k not in MAPPABLE_FIELDS]}
    if extra and isinstance(row.get("meta", {}), dict):  # the user's other columns travel with the record
        row["meta"] = {**extra, **row.get("meta", {})}
    for ours, theirs in fields.items():
        if theirs not in raw:
            raise DataError(path, line, theirs, f"missing (mapped to {ours!r} in data.fields)")
    if "query" in row:  # a flat single-turn record: the query becomes the one user message
        if "messages" in row:
            raise DataError(path, line, "query", "give either `query` or `messages`, not both")
        row["messages"] = [{"role": "user", "content": row.pop("query")}]
    if isinstance(row.get("id"), int):  # numeric ids from CSV-like sources are fine as strings
        row["id"] = str(row["id"])
    generated = "id" not in row
    try:
        record = Record.model_validate({**row, "id": "-"} if generated else row)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise DataError(path, line, field, error_words(first)) from None
    return (record.model_copy(update={"id": content_id(record)}) if generated else record), generated


def content_id(record: Record) -> str:
    """An id made from what a record asks and answers (its turns, document and gold answer): the same on every load,
    whatever the row's place in the file or its other columns."""
    return fingerprint(record.model_dump(mode="json", include={"messages", "context", "response"}))


def load_records(path: str | Path, fields: dict[str, str] | None = None,
                 skipped: list[DataError] | None = None, format: str = "record") -> list[Record]:
    """Load and validate every record of a file, or of a Hub dataset (`hf://ORG/NAME[@REVISION][:split]`, data.hub),
    rows in `format` (data.formats). A bad row raises `DataError` naming file, line and field, unless `skipped` is
    given: then bad rows (unparsable line, invalid record, duplicate id) are left out and their errors appended to it,
    for the caller to count and report (`data.on_error: skip`). Problems of the whole file (missing, unknown format, no
    records) always raise. A row without an id gets `content_id`; rows of identical content get it numbered in file
    order (`-2`, `-3`, ...), with a warning."""
    if is_hub(path):
        rows: Iterator[tuple[int, Any]] = enumerate(hub_dataset(path), start=1)
    else:
        path = Path(path)
        if not path.exists():
            raise DataError(path, None, None, "no such file or folder" + ("" if path.is_absolute() else
                                                                          f" (looked for {path.absolute()})"))
        rows = _readable_rows(path)
    records: list[Record] = []
    seen: dict[str, int] = {}
    made, repeated = 0, 0
    for line, raw in rows:
        try:
            if isinstance(raw, DataError):
                raise raw
            record, generated = _to_record(raw, fields or {}, format, path, line)
            if generated:
                made += 1
                content, copy = record.id, 2
                while record.id in seen:  # identical content: the next free number, the same on every load
                    record = record.model_copy(update={"id": f"{content}-{copy}"})
                    copy += 1
                repeated += copy > 2
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
    if made:
        log.info("data: %s: %d of %d records have no id: ids made from their content", path, made, len(records))
    if repeated:
        log.warning("data: %s: %d records without an id repeat an earlier record's content exactly: kept, their ids "
                    "numbered -2, -3, ... in file order", path, repeated)
    return records


def save_records(path: Path, records: list[Record]) -> None:
    write_jsonl(path, (r.model_dump(mode="json") for r in records))
