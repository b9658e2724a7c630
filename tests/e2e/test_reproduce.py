"""The reproduction experiment (issue 11): configs/reproduce.yaml is the experiment the issue asks for, `make
reproduce` continues it from the results ledger (issue 24; its budget passed on), keeps a timestamped console log and
fails when the run fails, and a run with several models per method
(two seeds and a full fine-tuning) SIGKILLed during its second model's training, or during evaluation, and started
again ends with the artifacts of a run never interrupted."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from ssrtune.config.run import load_config
from ssrtune.stages.base import trained_models
from tests.tiny_run import TinyRun, build_tiny_model, many_records
from tests.chain_runs import records_by_id, run_harness
from tests.paths import ROOT, TESTS

HARNESS = str(TESTS / "resume_kill.py")
LEARNING_RATE = 1e-3


def test_the_reproduce_config_is_the_pre_registered_design():
    config = load_config(ROOT / "configs" / "reproduce.yaml")
    models = [(m.method.name, m.train_settings(config)) for m in trained_models(config)]
    # (method, seed, learning rate as a share of the run's), LoRA only: full fine-tuning comes after the rest
    assert not any(train.full for _, train in models)
    lora = [(method, train.seed, round(train.learning_rate / config.train.learning_rate, 9)) for method, train in models]
    design = [(method, seed, 1) for seed in range(5) for method in ("sft", "ssr", "sft_rejected")
              if method != "sft_rejected" or seed < 3]
    assert lora[:len(design)] == design  # seed by seed: a ledger stopped part way holds whole seeds first
    assert set(lora[len(design):]) == {(m, 0, 1) for m in ("s3ft", "sdft", "self_only")} | {
        ("sft", seed, 0.1) for seed in (0, 1)}  # low learning-rate sft (arXiv 2509.20758), issue 25
    assert config.model.name == "smollm2-135m-instruct" and config.data.recipe == "grounded-qa"
    assert config.model.dtype == "float32" and config.data.seed != 0  # seed 0's test split informed the tuning
    assert config.data.n_train >= 500 and config.data.n_test >= 200
    retention = config.evaluate.retention
    assert {"hellaswag", "piqa", "arc_easy"} <= set(retention.benchmarks) and retention.limit >= 300
    prompts = [line.strip() for line in (ROOT / retention.kl_prompts_file).read_text().splitlines() if line.strip()]
    assert retention.kl_prompts >= 48 and len(set(prompts)) >= retention.kl_prompts


def test_make_reproduce_keeps_a_timestamped_console_log_and_the_exit_status(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stub = venv / "bin" / "ssrtune"  # stands in for the real run: says what it was asked, on both streams
    stub.write_text('#!/bin/sh\necho "args: $*"\necho "[data] a line on stderr" >&2\nexit "${STUB_STATUS:-0}"\n')
    stub.chmod(0o755)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".installed").touch()  # newer than pyproject.toml and the Makefile: nothing to install
    run_dir = tmp_path / "run"
    make = ["make", "-s", "-C", str(ROOT), "reproduce", f"VENV={venv}", f"REPRODUCE_DIR={run_dir}"]
    assert subprocess.run(make, capture_output=True, text=True).returncode == 0
    failed = subprocess.run(make, capture_output=True, text=True, env={**os.environ, "STUB_STATUS": "3"})
    assert failed.returncode != 0  # the pipe through the log does not hide a failed run
    lines = (run_dir / "console.log").read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    assert len(lines) == 4 and all(re.match(stamp, line) for line in lines)  # appended, not overwritten
    assert lines[0].endswith(f"args: reproduce configs/reproduce.yaml --run-dir {run_dir}")
    assert lines[1].endswith("[data] a line on stderr")
    budget = subprocess.run([*make, "BUDGET=75"], capture_output=True, text=True)
    assert budget.returncode == 0 and budget.stdout.splitlines()[0].endswith(f"--run-dir {run_dir} --budget 75")


def resume_config(folder: Path) -> dict:
    # Untied embeddings, so that the tiny model's answers differ from prompt to prompt (see test_chain_faults).
    model = build_tiny_model(folder / "model", seed=3, tie_word_embeddings=False)
    tiny = TinyRun(folder, model, many_records(folder / "train.jsonl", 2), many_records(folder / "test.jsonl", 3))
    # each run of the harness in a run_dir of its own (chain_kill.write_config)
    return tiny.tree(name="resume", models=[
        {"name": "sft-s0", "method": "sft"}, {"name": "sft-s1", "method": "sft", "train": {"seed": 1}},
        {"name": "sft-full", "method": "sft", "train": {"full": True}}],
        train={"epochs": 1, "batch_size": 3, "save_every": "1 steps", "learning_rate": LEARNING_RATE},
        evaluate={"batch_size": 2, "max_new_tokens": 4})


MODELS = ("sft-s0", "sft-s1", "sft-full")
RECORD_FILES = ["data/train.jsonl", "data/test.jsonl", "train/sft.jsonl",
                *(f"eval/{m}/{f}" for m in ("base", *MODELS) for f in ("predictions.jsonl", "scores.jsonl"))]


def without_run_names(value):
    """report.json less where it names its run directory (each run here has its own)."""
    if isinstance(value, dict):
        return {k: without_run_names(v) for k, v in value.items() if k not in ("runs", "run")}
    if isinstance(value, list):
        return [without_run_names(v) for v in value]
    return value


def assert_same_artifacts(run_dir: Path, reference: Path) -> None:
    for name in RECORD_FILES:
        got, duplicated = records_by_id(run_dir / name)
        assert got == records_by_id(reference / name)[0] and duplicated == 0, name
    for model in MODELS:
        done, want = (json.loads((d / "models" / model / "ssrtune_train.json").read_text()) for d in (run_dir, reference))
        assert (done["name"], done["method"], done["steps"]) == (model, "sft", want["steps"] == 4 and 4)
        weights = "model.safetensors" if model == "sft-full" else "adapter_model.safetensors"
        resumed, uninterrupted = (load_file(d / "models" / model / weights) for d in (run_dir, reference))
        assert resumed.keys() == uninterrupted.keys()
        for key, weight in uninterrupted.items():  # Adam moves a weight by about lr a step: see test_chain_faults
            torch.testing.assert_close(resumed[key], weight, rtol=0, atol=1e-3 * 4 * LEARNING_RATE)
    report, want = (json.loads((d / "report.json").read_text()) for d in (run_dir, reference))
    assert without_run_names(report) == without_run_names(want)


def test_a_run_of_several_models_per_method_resumes_after_a_kill_in_training_and_in_evaluation(tmp_path):
    kills = {"train": ["models/sft-s1/checkpoint-2/trainer_state.json", 0],  # the second model's training
             "evaluate": ["eval/sft-s1/predictions.jsonl", 4]}  # the second trained model's evaluation
    results = run_harness(HARNESS, tmp_path, {"config": resume_config(tmp_path), "kills": kills}, 600)
    assert results["reference_status"] == 0
    reference = tmp_path / "reference"
    for scenario, (path, _) in kills.items():
        result, log = results[scenario], (tmp_path / f"{scenario}.log").read_text()
        assert result["in_time"] and result["killed_status"] == -signal.SIGKILL, log[-3000:]
        assert result["rerun_status"] == 0, log[-3000:]
        assert_same_artifacts(tmp_path / scenario, reference)
        # the interrupted stage's time is its two sessions added up (in evaluation, the task suite's answers); the
        # stages done before the kill are reused
        stage = {"train": "train/sft-s1", "evaluate": "evaluate/sft-s1/task"}[scenario]
        timings = json.loads((tmp_path / scenario / "timings.json").read_text())
        assert (timings[stage]["sessions"], timings[stage]["interrupted"]) == (2, 1) and timings[stage]["seconds"] > 0
        assert timings["train/sft-s0"]["interrupted"] == 0 and set(timings) == set(
            json.loads((reference / "timings.json").read_text()))
    train_log = (tmp_path / "train.log").read_text()
    assert re.search(r"\n\[train/sft-s1\] sft, LoRA, 4 steps, loss .*\(resumed from checkpoint-[2-4]\) in .* s\n",
                     train_log)
    assert "[train/sft-full] sft, full, 4 steps" in train_log
