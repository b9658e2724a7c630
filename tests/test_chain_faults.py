"""Fault injection across the whole chain: `ssrtune run` SIGKILLed at a random moment, for 20 seeds, each rerun
ending with the artifacts of a run never interrupted; and a second process on each held run, refused. The processes
are made by tests/chain_kill.py (forked from one warm process, so that over 60 runs take about a minute)."""

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

from tests.conftest import build_tiny_model, record_dicts
from tests.test_crash import env

HARNESS = str(Path(__file__).with_name("chain_kill.py"))
N_SEEDS = 20
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
    records = folder / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in record_dicts()))
    return {"name": "chain", "methods": ["ssr"], "model": {"name": str(model), "dtype": "float32"},
            "data": {"recipe": None, "train_file": str(records), "test_file": str(records)},
            "generate": {"batch_size": 1, "max_new_tokens": 4},
            "judge": {"kind": "regex", "pattern": "Tw"},  # accepts some own answers: targets mix self and gold
            "train": {"epochs": 1, "batch_size": 3, "save_every": "1 steps", "learning_rate": LEARNING_RATE},
            "evaluate": {"batch_size": 2, "max_new_tokens": 4}}


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


def test_kill_9_at_random_moments_of_a_full_run_and_the_rerun_equals_an_uninterrupted_run(tmp_path):
    results = run_harness(HARNESS, tmp_path, {"config": chain_config(tmp_path), "seeds": list(range(N_SEEDS))}, 900)
    assert results["reference_status"] == 0 and set(results["uninterrupted_status"]) == {0}
    reference = tmp_path / "reference"
    steps = json.loads((reference / "models/ssr/ssrtune_train.json").read_text())["steps"]
    train_targets = {r["source"] for r in records_by_id(reference / "train/ssr.jsonl")[0].values()}
    assert steps == 2 and train_targets == {"self", "gold"}
    for run in tmp_path.glob("uninterrupted-*"):
        if run.is_dir():
            assert compare_with_reference(run, reference, steps) == (0, 0)

    kills = [s for s in results["seeds"] if s["killed_status"] == -signal.SIGKILL]
    lost = duplicated = refused = 0
    for seed in results["seeds"]:
        run_dir = tmp_path / f"seed-{seed['seed']}"
        assert seed["rerun_status"] == 0, (tmp_path / f"seed-{seed['seed']}.log").read_text()[-3000:]
        run_lost, run_duplicated = compare_with_reference(run_dir, reference, steps)
        lost, duplicated = lost + run_lost, duplicated + run_duplicated
        if seed["lock_left"]:  # the killed run held the run directory: the rerun takes its lock over
            log = (tmp_path / f"seed-{seed['seed']}.log").read_text()
            assert f"taking over the lock of process {seed['killed_pid']}" in log
        if "intruder_pid" in seed:  # a second process on the held run: stopped at once, naming the holder
            log = (tmp_path / f"seed-{seed['seed']}.intruder.log").read_text()
            refused += f"is in use by process {seed['holder_pid']} on " in log
            # refused, or it reached the lock after the kill had freed it and generated for the rerun to resume
            assert seed["intruder_status"] == (2 if "is in use" in log else 0), log
    where = Counter(s["last_written"] for s in kills)
    redrawn = sum(s["finished_before_kill"] for s in results["seeds"])
    print(f"\n{len(kills)} SIGKILLs of `ssrtune run` ({redrawn} runs ended before their kill and were redrawn), "
          f"landing after {dict(where)}; records lost {lost}, duplicated {duplicated}; {refused} second processes "
          f"on a held run refused; uninterrupted run "
          f"{results['uninterrupted_s']} s, harness {results['total_s']} s")
    assert len(kills) == N_SEEDS
    assert len(where) >= 4  # the kills landed all along the chain
    assert lost == 0 and duplicated == 0
    assert refused >= N_SEEDS // 2  # the others were killed before they took the lock
