"""Input files built to break a reader (nesting past the parser's limit, fields past the csv module's limit, bytes
that are not text where JSON must be written): each is a `DataError` naming file and line, or a counted skip under
`data.on_error: skip`, never a crash. And the formats that can stream are read without loading the whole file."""

import json
from pathlib import Path

import pytest

from ssrtune.data.loaders import load_records, save_records
from ssrtune.data.schema import DataError
from tests.data_rows import GOOD, jsonl

DEEP = "[" * 100_000 + "]" * 100_000  # past the json module's recursion limit


def test_json_nested_past_the_parsers_limit_is_a_located_error(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text(jsonl(GOOD, f'{{"id": "b", "query": "q", "response": "r", "meta": {{"x": {DEEP}}}}}',
                          {**GOOD, "id": "c"}))
    with pytest.raises(DataError, match=rf"^{path}, line 2: JSON nested too deeply to read$"):
        load_records(path)
    skipped: list[DataError] = []
    assert [r.id for r in load_records(path, skipped=skipped)] == ["a", "c"] and len(skipped) == 1
    whole = tmp_path / "deep.json"
    whole.write_text(f'[\n{json.dumps(GOOD)},\n{{"id": "b", "meta": {{"x": \n{DEEP}}}}}\n]\n')
    with pytest.raises(DataError, match=rf"^{whole}, line 4: JSON nested too deeply to read$"):
        load_records(whole)


def test_a_meta_nested_past_the_serializers_limit_is_the_rows_error(tmp_path):
    path = tmp_path / "d.jsonl"
    deep = json.loads("[" * 300 + "]" * 300)  # the json module reads it; JSON output refuses it
    path.write_text(jsonl(GOOD, {**GOOD, "id": "b", "meta": {"x": deep}}, {**GOOD, "id": "c"}))
    with pytest.raises(DataError, match=rf"^{path}, line 2, field 'meta': .*cannot be written as JSON"):
        load_records(path)
    skipped: list[DataError] = []
    records = load_records(path, skipped=skipped)
    assert [r.id for r in records] == ["a", "c"] and len(skipped) == 1
    save_records(tmp_path / "saved.jsonl", records)  # what the data stage does next


def test_parquet_bytes_that_are_not_text_are_the_rows_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    notes = [b"ok", b"caf\xe9", b"fine"]
    pq.write_table(pa.Table.from_pylist([{**GOOD, "id": i, "meta": {"note": n}} for i, n in zip("abc", notes)]), path)
    with pytest.raises(DataError, match=rf"^{path}, line 2, field 'meta': .*cannot be written as JSON .*utf-8"):
        load_records(path)
    skipped: list[DataError] = []
    records = load_records(path, skipped=skipped)
    assert [(r.id, r.meta) for r in records] == [("a", {"note": b"ok"}), ("c", {"note": b"fine"})]
    save_records(tmp_path / "saved.jsonl", records)
    assert [json.loads(line)["meta"] for line in (tmp_path / "saved.jsonl").open()] == [{"note": "ok"},
                                                                                        {"note": "fine"}]


def test_a_csv_field_over_128_kib_loads(tmp_path):
    document = "word " * 60_000  # 300 KB
    path = tmp_path / "big.csv"
    path.write_text(f'id,query,context,response\na,q,"{document}",r\nb,q,short,r\n')
    assert [len(r.context) for r in load_records(path)] == [len(document), 5]


def test_an_unreadable_csv_row_is_located_and_can_be_skipped(tmp_path, monkeypatch):
    import ssrtune.data.loaders

    monkeypatch.setattr(ssrtune.data.loaders, "CSV_FIELD_LIMIT", 1000)
    path = tmp_path / "wide.csv"
    path.write_text(f'id,query,response\na,q,r\nb,q,"{"x" * 2000}"\nc,q,r\n')
    with pytest.raises(DataError, match=rf"^{path}, line 3: unreadable CSV \(field larger than field limit"):
        load_records(path)
    skipped: list[DataError] = []
    assert [r.id for r in load_records(path, skipped=skipped)] == ["a", "c"] and len(skipped) == 1


def test_jsonl_csv_and_parquet_stream(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**GOOD, "id": f"r{i}"} for i in range(3000)]
    (tmp_path / "d.jsonl").write_text(jsonl(*rows))
    (tmp_path / "d.csv").write_text("id,query,response\n" + "".join(f"{r['id']},q,r\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet", row_group_size=1000)

    def whole_file(*args, **kwargs):
        raise AssertionError("read whole")

    monkeypatch.setattr(Path, "read_bytes", whole_file)
    monkeypatch.setattr(Path, "read_text", whole_file)
    monkeypatch.setattr(pq, "read_table", whole_file)
    for name in ("d.jsonl", "d.csv", "d.parquet"):
        assert len(load_records(tmp_path / name)) == 3000, name
