import json
import logging
import re

import pytest

from ssrtune.storage.nofollow import UnsafePathError
from ssrtune.storage.fingerprints import fingerprint
from ssrtune.storage.artifacts import (Artifact, BadLine, CacheRule, RecordFile, RecordFileError, StaleArtifactError, iter_jsonl,
                           jsonl_rows)


def test_resume_keeps_records_and_refuses_duplicates(tmp_path):
    out = RecordFile(tmp_path / "g.jsonl", "fp1")
    out.append([{"id": "a", "x": 1}, {"id": "b", "x": 2}])
    again = RecordFile(tmp_path / "g.jsonl", "fp1")
    assert set(again.records) == {"a", "b"} and "a" in again
    with pytest.raises(ValueError, match="already written"):
        again.append([{"id": "a", "x": 3}])


def test_torn_last_line_is_discarded_with_a_warning(tmp_path, caplog):
    out = RecordFile(tmp_path / "g.jsonl", "fp")
    out.append([{"id": "a"}])
    with open(tmp_path / "g.jsonl", "a") as handle:
        handle.write('{"id": "b", "resp')
    with caplog.at_level(logging.WARNING):
        again = RecordFile(tmp_path / "g.jsonl", "fp")
    assert list(again.records) == ["a"] and "torn" in caplog.text
    again.append([{"id": "b"}])
    lines = (tmp_path / "g.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b"]


def test_other_fingerprint_is_refused_unless_fresh(tmp_path):
    RecordFile(tmp_path / "g.jsonl", "fp1").append([{"id": "a"}])
    with pytest.raises(StaleArtifactError, match="--fresh"):
        RecordFile(tmp_path / "g.jsonl", "fp2")
    assert len(RecordFile(tmp_path / "g.jsonl", "fp2", CacheRule(fresh=True))) == 0


def test_fingerprint_is_stable_and_sensitive():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_records_without_their_fingerprint_are_refused(tmp_path):
    RecordFile(tmp_path / "g.jsonl", "fp1").append([{"id": "a"}])
    (tmp_path / "g.jsonl.meta.json").unlink()
    with pytest.raises(StaleArtifactError, match="no fingerprint"):
        RecordFile(tmp_path / "g.jsonl", "fp1")
    assert len(RecordFile(tmp_path / "g.jsonl", "fp1", CacheRule(fresh=True))) == 0


def test_a_kill_inside_a_batch_write_keeps_its_whole_records(tmp_path):
    out = RecordFile(tmp_path / "g.jsonl", "fp")
    out.append([{"id": "a"}])
    # a batch of three whose write stopped inside the third record
    with open(tmp_path / "g.jsonl", "a") as handle:
        handle.write('{"id": "b"}\n{"id": "c"}\n{"id": "d", "x"')
    again = RecordFile(tmp_path / "g.jsonl", "fp")
    assert list(again.records) == ["a", "b", "c"]
    again.append([{"id": "d"}])
    assert [json.loads(line)["id"] for line in (tmp_path / "g.jsonl").read_text().splitlines()] == list("abcd")


def test_artifact_redo_and_refuse_rules(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    made = Artifact(folder, folder / "made.json", "fp1", "refuse")
    assert not made.current and made.recorded is None
    made.check()  # nothing recorded yet: nothing to protect
    made.record(n=3)
    assert Artifact(folder, folder / "made.json", "fp1", "refuse").current
    assert Artifact(folder, folder / "made.json", "fp1", "refuse").recorded == {"fingerprint": "fp1", "n": 3}
    with pytest.raises(StaleArtifactError, match="fingerprint fp1, now fp2.*--fresh"):
        Artifact(folder, folder / "made.json", "fp2", "refuse").check()
    Artifact(folder, folder / "made.json", "fp2", "redo").check()  # a redo artifact is just made again
    assert not Artifact(folder, folder / "made.json", "fp2", "redo").current
    Artifact(folder, folder / "made.json", "fp2", "refuse", CacheRule(fresh=True))
    assert not folder.exists()  # --fresh discards the folder and its sidecar


def test_jsonl_rows_locate_bad_lines_and_iter_jsonl_stops_on_them(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a"}\n\n{"id": \n{"id": "\xff"}\n{"id": "d"}\n')
    rows = list(jsonl_rows(path))
    assert [n for n, _ in rows] == [1, 3, 4, 5] and rows[0][1] == {"id": "a"} and rows[3][1] == {"id": "d"}
    assert isinstance(rows[1][1], BadLine) and "invalid JSON" in str(rows[1][1])
    assert isinstance(rows[2][1], BadLine) and "not UTF-8" in str(rows[2][1])
    with pytest.raises(BadLine, match=rf"{path}, line 3: invalid JSON"):
        list(iter_jsonl(path))


def test_a_bad_line_before_the_last_stops_and_deletes_nothing(tmp_path, caplog):
    out = RecordFile(tmp_path / "g.jsonl", "fp")
    out.append([{"id": i} for i in "abcde"])
    path = tmp_path / "g.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"id": "b", "x\n'  # a corrupted second line of five
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    with pytest.raises(RecordFileError, match=rf"^{path}, line 2: unreadable .*--fresh"):
        RecordFile(path, "fp")
    assert path.read_bytes() == before and "torn" not in caplog.text


@pytest.mark.parametrize("line, problem", [(b'{"x": 1}\n', "string `id`"), (b'["a"]\n', "string `id`"),
                                           (b'{"id": 3}\n', "string `id`"), (b'{"id": "a"}\n', "written twice")])
def test_a_whole_line_that_is_not_a_new_record_is_a_clear_error(tmp_path, line, problem):
    path = tmp_path / "g.jsonl"
    RecordFile(path, "fp").append([{"id": "a"}])
    with open(path, "ab") as handle:
        handle.write(line + b'{"id": "z"}\n')
    before = path.read_bytes()
    with pytest.raises(RecordFileError, match=rf"^{path}, line 2: .*{re.escape(problem)}"):
        RecordFile(path, "fp")
    assert path.read_bytes() == before


def test_a_last_line_that_does_not_parse_is_torn_even_with_its_newline(tmp_path):
    path = tmp_path / "g.jsonl"
    RecordFile(path, "fp").append([{"id": "a"}])
    with open(path, "ab") as handle:
        handle.write(b'{"id": "b", \xff}\n')
    assert list(RecordFile(path, "fp").records) == ["a"]
    assert path.read_bytes() == b'{"id": "a"}\n'


def test_record_files_are_not_written_through_a_symbolic_link(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "g.jsonl").symlink_to(target)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        RecordFile(tmp_path / "run" / "g.jsonl", "fp").append([{"id": "a"}])
    (tmp_path / "run" / "h.jsonl").symlink_to(tmp_path / "absent.txt")  # a dangling link: append would create it
    with pytest.raises(UnsafePathError, match="symbolic link"):
        RecordFile(tmp_path / "run" / "h.jsonl", "fp").append([{"id": "a"}])
    assert target.read_text() == "keep me\n" and not (tmp_path / "absent.txt").exists()
