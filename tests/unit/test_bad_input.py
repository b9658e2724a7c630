"""Bad input files: every problem names file, line and field, or is skipped and counted under `data.on_error: skip`.

Complements tests/unit/test_data.py (which covers malformed JSON, missing and blank responses, bad roles, duplicate
ids, an empty file, non-UTF-8 bytes, a ragged CSV row and an unknown format).
"""

import gzip
import json
import logging
import re

import pytest
import yaml

from ssrtune.config.run import load_config
from ssrtune.data.loaders import load_records
from ssrtune.data.schema import DataError
from ssrtune.stages.data import Data
from tests.data_rows import GOOD, jsonl
from tests.tiny_run import run_stage


# (file content, line, field) for one bad row after a good one
BAD_ROWS = [
    ({"id": ["x"], "query": "q", "response": "r"}, "id"),
    ({"id": "", "query": "q", "response": "r"}, "id"),
    ({"id": "b", "query": "  ", "response": "r"}, "messages"),
    ({"id": "b", "query": "q", "response": None}, "response"),
    ({"id": "b", "query": "q", "response": ""}, "response"),
    ({"id": "b", "query": "q", "response": ["r"]}, "response"),
    ({"id": "b", "query": "q", "response": "r", "context": 7}, "context"),
    ({"id": "b", "query": "q", "response": "r", "meta": "answerable"}, "meta"),
    ({"id": "b", "messages": "q", "response": "r"}, "messages"),
    ({"id": "b", "messages": [{"role": "user"}], "response": "r"}, "messages.0.content"),
    ({"id": "b", "messages": [{"role": "robot", "content": "q"}], "response": "r"}, "messages.0.role"),
    ({"id": "b", "messages": [], "response": "r"}, "messages"),
    ({"id": "b", "query": "q", "messages": [{"role": "user", "content": "q"}], "response": "r"}, "query"),
]


@pytest.mark.parametrize("row, field", BAD_ROWS, ids=[f for _, f in BAD_ROWS])
def test_bad_row_names_file_line_and_field(tmp_path, row, field):
    path = tmp_path / "bad.jsonl"
    path.write_text(jsonl(GOOD, row))
    with pytest.raises(DataError) as err:
        load_records(path)
    assert str(err.value).startswith(f"{path}, line 2, field '{field}'")


def test_non_utf8_bytes_are_located_by_line(tmp_path):
    rows = jsonl(GOOD).encode() + b'{"id": "b", "query": "caf\xe9", "response": "r"}\n'
    (tmp_path / "bad.jsonl").write_bytes(rows)
    (tmp_path / "bad.jsonl.gz").write_bytes(gzip.compress(rows))
    (tmp_path / "bad.csv").write_bytes(b"id,query,response\na,q,r\nb,caf\xe9,r\n")
    (tmp_path / "bad.json").write_bytes(b'[\n{"id": "a", "query": "q", "response": "r"},\n{"id": "caf\xe9"}]')
    for name, line in [("bad.jsonl", 2), ("bad.jsonl.gz", 2), ("bad.csv", 3), ("bad.json", 3)]:
        with pytest.raises(DataError, match=rf"{name}, line {line}: not UTF-8"):
            load_records(tmp_path / name)


def test_a_byte_order_mark_is_not_an_error(tmp_path):
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl(GOOD).encode())
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfid,query,response\na,q,r\n")
    for name in ("bom.jsonl", "bom.csv"):
        assert [r.id for r in load_records(tmp_path / name)] == ["a"], name


@pytest.mark.parametrize("name, content, problem", [
    ("blank.jsonl", "\n  \n\n", "holds no records"),
    ("header.csv", "id,query,response\n", "holds no records"),
    ("empty.json", "[]", "holds no records"),
    ("scalar.json", '"text"', "must hold a list"),
    ("broken.json", '[{"id": "a",\n "query": }]', "line 2: invalid JSON"),
    ("wide.csv", "id,query,response\na,q,r\nb,q,r,extra\n", "line 3: row has a different number of cells"),
    ("dupes.csv", "id,query,response\na,q,r\na,q2,r\n", "line 3, field 'id': duplicate id 'a' \\(first on line 2\\)"),
])
def test_bad_files(tmp_path, name, content, problem):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=problem):
        load_records(tmp_path / name)


def test_parquet_with_a_wrong_type(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"id": "a", "query": "q", "response": 3}]), tmp_path / "d.parquet")
    with pytest.raises(DataError, match="line 1, field 'response'"):
        load_records(tmp_path / "d.parquet")


def test_corrupt_compressed_and_binary_files(tmp_path):
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(jsonl(GOOD, GOOD).encode())[:-12])
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really parquet")
    for name in ("cut.jsonl.gz", "broken.parquet"):
        with pytest.raises(DataError, match=rf"{name}: unreadable"):
            load_records(tmp_path / name)


def test_a_huge_line_loads_and_a_huge_broken_line_gives_a_short_error(tmp_path):
    huge = {"id": "big", "query": "q", "context": "word " * 2_000_000, "response": "r"}  # a 10 MB line
    (tmp_path / "huge.jsonl").write_text(jsonl(GOOD, huge))
    assert len(load_records(tmp_path / "huge.jsonl")[1].context) == 10_000_000
    (tmp_path / "torn.jsonl").write_text(jsonl(GOOD, json.dumps(huge)[:-2]))
    with pytest.raises(DataError) as err:
        load_records(tmp_path / "torn.jsonl")
    assert "line 2: invalid JSON" in str(err.value) and len(str(err.value)) < 200 + len(str(tmp_path))


def test_skip_policy_leaves_bad_rows_out_and_lists_them(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(jsonl(GOOD, "{oops", {"id": "b", "query": "q"}, {**GOOD, "id": "c"}, GOOD).encode()
                     + b'{"id": "d", "query": "\xff", "response": "r"}\n')
    skipped: list[DataError] = []
    records = load_records(path, skipped=skipped)
    assert [r.id for r in records] == ["a", "c"]
    assert [str(e).split(": ", 1)[0] for e in skipped] == [
        f"{path}, line 2", f"{path}, line 3, field 'response'", f"{path}, line 5, field 'id'", f"{path}, line 6"]
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text(jsonl("{oops", "[1]"))
    with pytest.raises(DataError, match=r"holds no records \(2 bad rows skipped\)"):
        load_records(only_bad, skipped=[])


def test_skip_policy_is_counted_in_the_run(tmp_path, caplog):
    train = tmp_path / "train.jsonl"
    train.write_text(jsonl(GOOD, "{oops", {**GOOD, "id": "b"}))
    test = tmp_path / "test.jsonl"
    test.write_text(jsonl(GOOD))
    overrides = [f"run_dir={tmp_path / 'run'}", "data.recipe=null", f"data.train_file={train}",
                 f"data.test_file={test}"]
    with pytest.raises(DataError, match="line 2"):
        run_stage(load_config(None, overrides), Data())
    config = load_config(None, [*overrides, "data.on_error=skip"])
    with caplog.at_level(logging.WARNING):
        train_records, _ = run_stage(config, Data())
    assert [r.id for r in train_records] == ["a", "b"]
    assert "skipped 1 bad train row" in caplog.text
    meta = json.loads((tmp_path / "run" / "data" / "data.meta.json").read_text())
    assert meta["n_train"] == 2 and len(meta["skipped"]["train"]) == 1 and meta["skipped"]["test"] == []
    assert "line 2" in meta["skipped"]["train"][0]


def test_edited_data_file_is_not_reused_silently(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text(jsonl(GOOD))
    config = load_config(None, [f"run_dir={tmp_path / 'run'}", "data.recipe=null", f"data.train_file={train}",
                                f"data.test_file={train}"])
    assert [r.id for r in run_stage(config, Data())[0]] == ["a"]
    train.write_text(jsonl(GOOD, {**GOOD, "id": "b"}))
    assert [r.id for r in run_stage(config, Data())[0]] == ["a", "b"]


@pytest.mark.parametrize("tree, path", [
    ({"judge": {"kind": "all", "judges": [{"kind": "refusal"}, {"kind": "contains", "skip_refusal": True}]}},
     "judge.judges.1.skip_refusal"),
    ({"judge": {"kind": "any", "judges": [{"kind": "regexp"}]}}, "judge.judges.0.kind"),
    ({"train": {"lora_target_modules": 5}}, "train.lora_target_modules"),
    ({"model": {"trust_remote_code": "perhaps"}}, "model.trust_remote_code"),
    ({"data": {"recipe": None, "train_file": "a.jsonl", "test_file": "b.jsonl", "fields": {"query": 3}}},
     "data.fields.query"),
    ({"data": {"recipe": None, "train_file": "a.jsonl", "test_file": "b.jsonl", "on_error": "ignore"}},
     "data.on_error"),
    ({"data": {"recipe": None, "train_file": "a.jsonl", "test_file": "b.jsonl", "n_test": 5}}, "data.n_test"),
    ({"methods": ["ssr", "magic"]}, "methods.1"),
    ({"generate": []}, "generate"),
])
def test_nested_config_errors_name_the_key_path(tmp_path, tree, path):
    from ssrtune.config.run import ConfigError

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError) as err:
        load_config(config)
    # (a union's alternatives are named after the path: train.lora_target_modules.str: ...)
    assert re.search(rf"^  {re.escape(path)}[:.]", str(err.value), re.M), str(err.value)
