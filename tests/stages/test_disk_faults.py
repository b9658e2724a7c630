"""A full disk (ENOSPC) or a read-only run directory (EROFS) in the middle of each stage: one clear line, every file
already written whole, and the rerun once the disk is fixed resumes with nothing lost or duplicated.

The fault is simulated in the writer (`os.write` / `os.open`, which ssrtune.storage.artifacts writes with) at a chosen byte of a
chosen artifact, and made real on a small tmpfs for the Trainer's checkpoints, which torch and safetensors write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from ssrtune import pipeline
from ssrtune.config.run import dump_config, load_config
from ssrtune.storage.artifacts import RecordFile, write_text_atomic
from tests.chain_runs import chain_config, compare_with_reference
from tests.commands import cli

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class FaultyDisk:
    """Turns full (ENOSPC) or read-only (EROFS) once `after_bytes` bytes went into a file whose path ends with `name`.

    A full disk takes what still fits of the write that fills it (as a real one does) and refuses the next; a
    read-only one refuses every write and every open for writing. `repair()` makes it whole again."""

    def __init__(self, monkeypatch):
        self.code = None
        self.name, self.budget, self.broken = "", 0, False
        real_write, real_open = os.write, os.open

        def write(fd, data):
            if self.code and not self.broken and self.is_target(os.readlink(f"/proc/self/fd/{fd}")):
                fits = min(len(data), self.budget)
                self.budget -= fits
                self.broken = fits < len(data)
                return real_write(fd, bytes(data[:fits])) if fits else self.fail()
            return self.fail() if self.broken else real_write(fd, data)

        def open_(path, flags, *args, **kwargs):
            if self.broken and self.code == errno.EROFS and flags & WRITE_FLAGS:
                self.fail()
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "open", open_)

    def is_target(self, path: str) -> bool:
        """The named file, or the temporary file an atomic write of it renames (`.<name>.tmp<pid>`)."""
        path = Path(path)
        return str(path.with_name(re.sub(r"^\.(.+)\.tmp\d+$", r"\1", path.name))).endswith(self.name)

    def fail(self):
        raise OSError(self.code, os.strerror(self.code))

    def break_at(self, name: str, after_bytes: int, code: int) -> None:
        self.name, self.budget, self.code, self.broken = name, after_bytes, code, False

    def repair(self) -> None:
        self.code, self.broken = None, False


def error_line(err: str) -> str:
    """The one error line of a command's stderr (a progress bar cut short by the error may precede it on its line)."""
    assert "Traceback" not in err and err.count("error: ") == 1, err
    line = "error: " + err.split("error: ")[1].rstrip("\n")
    assert "\n" not in line, err
    return line


def assert_whole(run_dir: Path) -> None:
    """Every record file ends on a whole record, every JSON file parses, no temporary file is left."""
    for path in run_dir.rglob("*.jsonl"):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{path} ends inside a record"
        for line in data.splitlines():
            json.loads(line)
    for path in run_dir.rglob("*.json"):
        if "checkpoint-" not in str(path):  # the Trainer's own files; an interrupted checkpoint is skipped on resume
            json.loads(path.read_text())
    assert not list(run_dir.rglob(".*.tmp*"))


@contextlib.contextmanager
def one_torch_thread():
    """Tiny-model ops are all overhead: one thread spares the contention of a loaded machine, and runs made under it
    sum in one order (greedy answers compared across runs cannot flip on a near-tie)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture()
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The chain's configuration tree and an uninterrupted run of it (its artifacts are what every rerun must equal)."""
    folder = tmp_path_factory.mktemp("chain")
    tree = chain_config(folder)
    path = folder / "reference.yaml"
    path.write_text(yaml.safe_dump({**tree, "run_dir": str(folder / "reference")}))
    with one_torch_thread():  # as the runs compared with it
        pipeline.run(load_config(path))
    return tree, folder / "reference"


def write_config(tmp_path: Path, tree: dict, run_dir: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**tree, "run_dir": str(run_dir)}))
    return path


# Each stage command broken in the middle of writing its own artifact, after this many bytes of it.
STAGES = [("generate", "generations.jsonl", 60), ("judge", "judgments.jsonl", 300), ("select", "train/ssr.jsonl", 500),
          ("train", "models/ssr/ssrtune_train.json", 40), ("evaluate", "eval/ssr/predictions.jsonl", 30)]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["disk-full", "read-only"])
def test_a_disk_fault_in_each_stage_is_one_line_and_the_rerun_resumes(code, chain, tmp_path, monkeypatch, capsys,
                                                                       one_thread):
    tree, reference = chain
    run_dir = tmp_path / "run"
    config = write_config(tmp_path, tree, run_dir)
    # Only `ssrtune run` writes config.yaml, which the report (run by `evaluate`) reads: a run made stage by stage
    # has none (a gap of the stage commands, not of fault handling).
    dump_config(load_config(config), run_dir / "config.yaml")
    disk = FaultyDisk(monkeypatch)
    for command, artifact, after_bytes in STAGES:
        disk.break_at(artifact, after_bytes, code)
        status, _, err = cli(monkeypatch, capsys, command, config)
        line = error_line(err)
        assert status == 2, err
        assert line.startswith(f"error: {run_dir / artifact}: {os.strerror(code)}; the files already written are "
                               "whole: "), line
        assert line.endswith("then rerun the same command to resume")
        assert_whole(run_dir)
        before = (run_dir / artifact).read_bytes() if (run_dir / artifact).exists() else b""
        disk.repair()
        status, _, err = cli(monkeypatch, capsys, command, config)
        assert status == 0, err
        if artifact.endswith(".jsonl") and command != "select":  # record files: kept, and only the rest appended
            assert (run_dir / artifact).read_bytes().startswith(before)
    status, _, err = cli(monkeypatch, capsys, "report", run_dir)
    assert status == 0, err
    assert compare_with_reference(run_dir, reference, steps=2) == (0, 0)


def test_a_failed_append_is_cut_back_to_the_last_whole_record(tmp_path, monkeypatch):
    disk = FaultyDisk(monkeypatch)
    out = RecordFile(tmp_path / "g.jsonl", "fp")
    out.append([{"id": "a", "response": "x"}])
    disk.break_at("g.jsonl", 10, errno.ENOSPC)
    with pytest.raises(OSError, match="No space left on device") as failed:
        out.append([{"id": "b", "response": "y" * 40}, {"id": "c"}])
    assert failed.value.filename == str(tmp_path / "g.jsonl")
    assert (tmp_path / "g.jsonl").read_text() == '{"id": "a", "response": "x"}\n'
    assert "b" not in out and len(out) == 1  # not counted as written
    disk.repair()
    out.append([{"id": "b", "response": "y" * 40}, {"id": "c"}])
    assert [json.loads(line)["id"] for line in (tmp_path / "g.jsonl").read_text().splitlines()] == ["a", "b", "c"]


def test_a_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    write_text_atomic(tmp_path / "task.json", "old\n")
    disk = FaultyDisk(monkeypatch)
    disk.break_at("task.json", 3, errno.ENOSPC)
    with pytest.raises(OSError, match="No space left on device"):
        write_text_atomic(tmp_path / "task.json", "a new and longer text\n")
    assert (tmp_path / "task.json").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["task.json"]


def test_the_folder_is_fsynced_after_each_rename_and_new_record_file(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.path.isdir(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    write_text_atomic(tmp_path / "a.json", "{}")
    assert synced == [False, True]  # the file's data, then the folder holding its new name
    synced.clear()
    out = RecordFile(tmp_path / "g.jsonl", "fp")  # writes its sidecar atomically
    synced.clear()
    out.append([{"id": "a"}])
    out.append([{"id": "b"}])
    assert synced == [False, True, False]  # the folder only when the record file was created


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A 4 MiB tmpfs (needs root and a kernel that lets this process mount); unmounted at the end."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot mount a tmpfs here ({err}); the simulated faults above still ran")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_a_real_full_disk_during_training_and_a_real_read_only_one(chain, tmp_path, small_tmpfs, monkeypatch, capsys,
                                                                   one_thread):
    tree, reference = chain
    run_dir = small_tmpfs / "run"
    config = write_config(tmp_path, tree, run_dir)
    dump_config(load_config(config), run_dir / "config.yaml")  # as above
    assert cli(monkeypatch, capsys, "select", config)[0] == 0
    # Leave 128 KiB: the first checkpoint's adapter fits, its optimizer state (about 150 KB) does not.
    stats = os.statvfs(small_tmpfs)
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - (128 << 10)))
    status, _, err = cli(monkeypatch, capsys, "train", config)
    line = error_line(err)
    assert status == 2, err
    assert line.startswith(f"error: {run_dir}: No space left on device (") and line.endswith("to resume"), line
    assert_whole(run_dir)
    assert not (run_dir / "models/ssr/ssrtune_train.json").exists()
    assert not (run_dir / "models/ssr/checkpoint-1/trainer_state.json").exists()  # cut short, skipped on resume

    filler.unlink()  # space freed
    assert cli(monkeypatch, capsys, "train", config)[0] == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    try:
        status, _, err = cli(monkeypatch, capsys, "evaluate", config)
        assert status == 2 and error_line(err) == (
            f"error: {run_dir}/.ssrtune.lock: Read-only file system; the files already written are whole: make "
            f"{run_dir} writable, then rerun the same command to resume")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_tmpfs)], check=True)
    assert cli(monkeypatch, capsys, "evaluate", config)[0] == 0
    assert cli(monkeypatch, capsys, "report", run_dir)[0] == 0
    assert compare_with_reference(run_dir, reference, steps=2) == (0, 0)
    shutil.rmtree(run_dir)
