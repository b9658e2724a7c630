"""A full run on the tiny model to SIGKILL and rerun (`chain_config`), the kill harnesses' runner (`run_harness`), and
the check that a rerun ended with the artifacts of a run never interrupted (`compare_with_reference`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.commands import env
from tests.tiny_run import TinyRun, build_tiny_model, write_records
LEARNING_RATE = 1e-3
# Whole-file and record artifacts compared with the uninterrupted run (by id for the record files).
RECORD_FILES = ["data/train.jsonl", "data/test.jsonl", "generations.jsonl", "judgments.jsonl", "train/ssr.jsonl",
                "eval/base/predictions.jsonl", "eval/base/scores.jsonl", "eval/ssr/predictions.jsonl",
                "eval/ssr/scores.jsonl"]
JSON_FILES = ["train/ssr.stats.json", "eval/base/task.json", "eval/ssr/task.json", "truncation.json"]


def chain_config(folder: Path) -> dict:
    # Untied embeddings: the tied tiny model echoes the prompt's last token (a newline), so every answer would be
    # empty and comparing answers would prove nothing; this one answers each prompt differently.
    model = build_tiny_model(folder / "model", seed=3, tie_word_embeddings=False)
    tiny = TinyRun(folder, model, write_records(folder / "records.jsonl"))
    # each run of the harness in a run_dir of its own (chain_kill.write_config)
    return tiny.tree(name="chain", methods=["ssr"], generate={"batch_size": 1, "max_new_tokens": 4},
                     judge={"kind": "regex", "pattern": "Tw"},  # accepts some own answers: targets mix self and gold
                     train={"epochs": 1, "batch_size": 3, "save_every": "1 steps", "learning_rate": LEARNING_RATE},
                     evaluate={"batch_size": 2, "max_new_tokens": 4})


def records_by_id(path: Path) -> tuple[dict[str, dict], int]:
    """The records of a JSONL file by id, and how many ids were written more than once."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {r["id"]: r for r in rows}, sum(n - 1 for n in Counter(r["id"] for r in rows).values())


def compare_with_reference(run_dir: Path, reference: Path, steps: int) -> tuple[int, int]:
    """Assert `run_dir` holds the reference's artifacts; returns (records lost, records duplicated)."""
    lost = duplicated = 0
    for name in RECORD_FILES:
        got, dup = records_by_id(run_dir / name)
        want, _ = records_by_id(reference / name)
        lost += len(want.keys() - got.keys())
        duplicated += dup
        assert got == want, f"{run_dir / name} differs from the uninterrupted run"
    for name in JSON_FILES:
        assert json.loads((run_dir / name).read_text()) == json.loads((reference / name).read_text()), name
    assert json.loads((run_dir / "models/ssr/ssrtune_train.json").read_text())["steps"] == steps
    # Resuming reloads the optimizer state of a checkpoint; Adam moves a weight by at most about lr a step, and a
    # thousandth of steps x lr bounds any reordering of fp32 sums while catching a skipped or repeated step.
    resumed, uninterrupted = (load_file(d / "models/ssr/adapter_model.safetensors") for d in (run_dir, reference))
    assert resumed.keys() == uninterrupted.keys()
    for key, weight in uninterrupted.items():
        torch.testing.assert_close(resumed[key], weight, rtol=0, atol=1e-3 * steps * LEARNING_RATE)
    assert (run_dir / "report.md").exists()
    assert not list(run_dir.rglob(".*.tmp*")), "a temporary file was left behind"
    return lost, duplicated


def run_harness(harness: str, work: Path, spec: dict, timeout: float) -> dict:
    """Run a kill harness (tests/chain_kill.py, tests/resume_kill.py) on `spec` in `work`; its results.json."""
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps({"work": str(work), **spec}))
    process = subprocess.Popen([sys.executable, harness, str(spec_file)], env=env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output = process.communicate(timeout=timeout)[0]
    finally:  # the harness and every run it forked
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output[-3000:]
    return json.loads((work / "results.json").read_text())
