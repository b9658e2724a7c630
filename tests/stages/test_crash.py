"""Crash safety: SIGKILL a stage's process in the middle of its work, resume it, and compare with a run that was
never interrupted. Every id must be present exactly once and nothing already computed may be lost.

The killed run is a subprocess (the CLI, or for the judge a script around the same stage function); the resume runs
the same stage function in this process, which saves a second start of torch and transformers.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from ssrtune.training.checkpoints import complete_checkpoints
from ssrtune.config.run import load_config
from ssrtune.judges.base import JudgeInput
from ssrtune.judges.factory import build_judge
from ssrtune.stages.base import trained_models
from ssrtune.stages.data import Data
from ssrtune.stages.generate import Generate
from ssrtune.stages.judge import Judge
from ssrtune.stages.train import Train
from tests.commands import SSRTUNE, env
from tests.tiny_run import TinyRun, many_records, run_stage

N_COPIES = 6  # 36 records
# one record a generation batch, a checkpoint every 2 steps: many moments to be killed at
CRASH = {"name": "crash", "methods": ["sft"], "generate": {"batch_size": 1, "max_new_tokens": 8},
         "train": {"epochs": 1, "batch_size": 2, "save_every": "2 steps", "learning_rate": 1e-3}}


def crash_config(tmp_path: Path, tiny_model: Path, copies: int = N_COPIES) -> Path:
    """The crash tests' run on `copies` times the six records, as a configuration file."""
    return TinyRun(tmp_path, tiny_model, many_records(tmp_path / "records.jsonl", copies)).file(**CRASH)


def kill_when(command: list[str], ready, timeout: float = 300) -> None:
    """Start `command`, SIGKILL it as soon as `ready()` holds, and check that it was killed, not finished."""
    process = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"finished before the kill: {process.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def ids_once(path: Path, expected: set[str]) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    counts = Counter(r["id"] for r in rows)
    assert set(counts) == expected and set(counts.values()) == {1}
    return {r["id"]: r for r in rows}


def test_generate_killed_midway_resumes_to_the_uninterrupted_result(tiny_model, tmp_path, caplog):
    config_path = crash_config(tmp_path, tiny_model)
    out = tmp_path / "run" / "generations.jsonl"
    kill_when([SSRTUNE, "generate", str(config_path)], lambda: lines(out) >= 3)
    n_before = lines(out)
    assert 3 <= n_before < 6 * N_COPIES
    # A kill inside the write of a record leaves a torn last line; it is too quick a moment to hit reliably
    # with a real kill, so the tail such a kill leaves is appended by hand.
    with open(out, "a") as handle:
        handle.write('{"id": "q1-9", "respo')
    config = load_config(config_path)
    train_records, _ = run_stage(config, Data())
    with caplog.at_level(logging.WARNING):
        assert len(run_stage(config, Generate())) == len(train_records)
    assert "torn last record" in caplog.text
    got = ids_once(out, {r.id for r in train_records})

    reference = load_config(config_path, [f"run_dir={tmp_path / 'reference'}"])
    uninterrupted = run_stage(reference, Generate())
    assert {i: r["response"] for i, r in got.items()} == {i: r["response"] for i, r in uninterrupted.items()}


SLOW_JUDGE = """
import functools, sys, time
from ssrtune.config.run import load_config
from ssrtune.judges.base import Judge
from ssrtune.stages import judge as stage
from ssrtune.stages.base import Run

class SlowJudge(Judge):
    # Stands in for a slow judge (an LLM behind an endpoint), so that the kill lands between two batches.
    def __init__(self, inner):
        self.inner = inner
    def judge(self, items):
        time.sleep(0.3)
        return self.inner.judge(items)

build = stage.build_judge
stage.build_judge = lambda config: SlowJudge(build(config))
stage.judge_all = functools.partial(stage.judge_all, batch_size=4)
Run(load_config(sys.argv[1]))(stage.Judge())
"""


def test_judge_killed_midway_resumes_to_the_uninterrupted_result(tiny_model, tmp_path):
    config_path = crash_config(tmp_path, tiny_model)
    config = load_config(config_path)
    records, _ = run_stage(config, Data())
    generations = run_stage(config, Generate())
    out = tmp_path / "run" / "judgments.jsonl"
    kill_when([sys.executable, "-c", SLOW_JUDGE, str(config_path)], lambda: lines(out) >= 8)
    assert 8 <= lines(out) < len(records)
    run_stage(config, Judge())
    got = ids_once(out, {r.id for r in records})
    items = [JudgeInput.of(r, generations[r.id]["response"]) for r in records]
    uninterrupted = build_judge(config.judge).judge(items)
    assert [got[i.id]["verdict"] for i in items] == [j.verdict for j in uninterrupted]
    assert [got[i.id]["rationale"] for i in items] == [j.rationale for j in uninterrupted]


def checkpoint_steps(folder: Path) -> list[int]:
    """The steps of the checkpoints resuming may use: the kill can land while trainer_state.json is being written, and
    a file that merely exists is not yet a checkpoint."""
    return [int(checkpoint.name.split("-")[1]) for checkpoint in complete_checkpoints(folder)]


def test_train_killed_midway_resumes_from_its_last_checkpoint(tiny_model, tmp_path):
    config_path = crash_config(tmp_path, tiny_model, copies=2)  # 12 examples: 6 steps an epoch
    config = load_config(config_path, ["train.epochs=2"])
    [sft] = trained_models(config)
    model_dir = tmp_path / "run" / "models" / "sft"
    kill_when([SSRTUNE, "train", str(config_path), "train.epochs=2"],
              lambda: any(step >= 4 for step in checkpoint_steps(model_dir)))
    assert not (model_dir / "ssrtune_train.json").exists()
    last = max(checkpoint_steps(model_dir))
    assert 4 <= last < 12

    run_stage(config, Train(sft))
    result = json.loads((model_dir / "ssrtune_train.json").read_text())
    assert result["resumed_from"] is not None and result["steps"] == 12
    assert int(Path(result["resumed_from"]).name.split("-")[1]) >= last  # not from scratch

    # The same training, never interrupted, ends with the same adapter.
    reference = load_config(config_path, ["train.epochs=2", f"run_dir={tmp_path / 'reference'}"])
    reference_dir = run_stage(reference, Train(sft))
    from safetensors.torch import load_file

    resumed, uninterrupted = (load_file(d / "adapter_model.safetensors") for d in (model_dir, reference_dir))
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=1e-4, atol=1e-6)


def test_an_interrupted_checkpoint_save_is_skipped_on_resume(tmp_path, caplog):
    from ssrtune.training.trainer import last_complete_checkpoint

    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text('{"global_step": %d}' % step)
    (tmp_path / "checkpoint-6").mkdir()  # killed before its state was written
    (tmp_path / "checkpoint-6" / "adapter_model.safetensors").write_bytes(b"\0")
    (tmp_path / "checkpoint-8").mkdir()  # killed while writing its state
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text('{"global_st')
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert last_complete_checkpoint(tmp_path / "nothing-yet") is None
