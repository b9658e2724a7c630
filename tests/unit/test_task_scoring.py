"""A task other than grounded QA, end to end: GSM8K-style problems ({uid, problem, solution}, mapped fields) scored by
the numeric judge, through the example script and the Python API; and an llm judge scoring the task, cached."""

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import ssrtune
from ssrtune.evaluation.benchmarks import gsm8k
from ssrtune.data.prompts import prompt_messages
from ssrtune.data.schema import Record
from ssrtune.stages.evaluate import Evaluate
from ssrtune.storage.artifacts import iter_jsonl, read_json
from tests import fake_openai as fake

from tests.tiny_run import run_stage
from tests.paths import ROOT

N_TEST, N_TRAIN = 6, 4  # the example holds out GSM8K's first problems and trains on the ones after them
ANSWER = "18"  # the answer of the first held-out problem only


@pytest.fixture(scope="module")
def answering_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model taught to reply "18" to the held-out problems: right on the first, wrong on the others, so
    the scores are known and neither all 0 nor all 1."""
    folder = tmp_path_factory.mktemp("answers-18")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    answer = tokenizer(ANSWER + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    sequences = []
    for problem in gsm8k()[:N_TEST]:  # the prompts the evaluation builds
        record = Record(id=problem.id, messages=[{"role": "user", "content": problem.question}], response="x")
        prompt = tokenizer.apply_chat_template(prompt_messages(record), add_generation_prompt=True, return_dict=False)
        sequences.append((torch.tensor([prompt + answer]), torch.tensor([[-100] * len(prompt) + answer])))
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        for input_ids, labels in sequences:
            model(input_ids=input_ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def example():
    spec = importlib.util.spec_from_file_location("gsm8k_example", ROOT / "examples" / "gsm8k.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def last_number(text: str) -> float | None:
    """The test's own reading of an answer: its last number, commas dropped."""
    numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?", text)
    return float(numbers[-1].replace(",", "")) if numbers else None


def test_a_gsm8k_style_task_is_scored_by_its_judge(answering_model, tmp_path, capsys):
    deterministic = ["model.dtype=float32"]
    results = example().main(["--model", str(answering_model), "--n-train", str(N_TRAIN), "--n-test", str(N_TEST),
                              "--max-new-tokens", "4", "--workdir", str(tmp_path),
                              *(arg for setting in deterministic for arg in ("--set", setting))])
    console = capsys.readouterr().out
    run = tmp_path / "run"
    gold = {p.id: float(p.answer) for p in gsm8k()[:N_TEST]}  # the data's short answers, not the judge's reading
    assert set(results) == {"base", "sft", "ssr"}
    for name in results:
        task = read_json(run / "eval" / name / "task.json")
        rows = {r["id"]: r for r in iter_jsonl(run / "eval" / name / "scores.jsonl")}
        predictions = {p["id"]: p["response"] for p in iter_jsonl(run / "eval" / name / "predictions.jsonl")}
        expected = {i: last_number(predictions[i]) == gold[i] for i in gold}
        assert {i: r["correct"] for i, r in rows.items()} == expected, predictions
        assert all(r["score"] == float(r["correct"]) for r in rows.values())
        assert task["n"] == N_TEST and task["judge"] == "numeric" and results[name] == task
        assert task["accuracy"] == pytest.approx(sum(expected.values()) / N_TEST)
        assert 0 < task["accuracy"] < 1  # non-degenerate: some answers right, some wrong
        assert task["accuracy_ci95"][0] < task["accuracy"] < task["accuracy_ci95"][1]
        assert sum(task["verdicts"].values()) == N_TEST and not any(k.startswith("unanswerable") for k in task)
    base = {r["id"]: r for r in iter_jsonl(run / "eval" / "base" / "scores.jsonl")}
    assert base["0"]["prediction"] == ANSWER and base["0"]["correct"] and base["0"]["score"] == 1.0  # 18 is right
    assert base["1"]["prediction"] == ANSWER and not base["1"]["correct"] and base["1"]["score"] == 0.0  # gold 3
    # the console and the report show the columns of this task: accuracy, no grounded-QA columns
    assert "task accuracy" in console and "unans." not in console and "ans. recall" not in console
    report = (run / "report.md").read_text()
    assert "Scored by: numeric." in report and "unans. F1" not in report and "base: task" in report

    # another judge for the held-out task re-judges the same answers: none is generated again
    predictions_file = run / "eval" / "base" / "predictions.jsonl"
    before = predictions_file.read_bytes(), predictions_file.stat().st_mtime_ns
    exact = ssrtune.Pipeline(ssrtune.load_config(run / "config.yaml", {"evaluate.judge": {"kind": "exact"}}))
    task = exact.evaluate("base")["task"]
    assert (predictions_file.read_bytes(), predictions_file.stat().st_mtime_ns) == before
    assert task["judge"] == "exact" and task["accuracy"] == 0.0  # "18" is not the whole worked solution
    assert {r["rationale"] for r in iter_jsonl(run / "eval" / "base" / "task.judgments.jsonl")} == {
        "equals no gold answer"}


def test_an_llm_judge_scores_the_task_once_and_resumes(tiny_run, tmp_path, fake_openai):
    verdicts = {"What colour is the sky?": "Yes", "Who wrote the letter?": "yes.", "How many cats": "Maybe so"}

    def handler(request):
        text = fake.last_user_text(request)
        return fake.answer(next((v for q, v in verdicts.items() if q in text), "No"))

    fake_openai.handler = handler
    endpoint = {"base_url": fake_openai.url, "model": "judge-model", "api_key_env": None, "max_retries": 0}
    config = tiny_run.config(evaluate={"batch_size": 4, "max_new_tokens": 4,
                                       "judge": {"kind": "llm", "engine": "openai", "endpoint": endpoint}})
    task = run_stage(config, Evaluate())["task"]
    assert task["verdicts"] == {"accept": 2, "reject": 3, "failed": 1}  # "Maybe so" is no verdict: failed, counted
    assert task["accuracy"] == pytest.approx(2 / 6) and task["judge"] == "llm(openai: judge-model)"
    assert task["n_unanswerable"] == 2 and task["answerable_accuracy"] == pytest.approx(2 / 4)  # grounded data
    assert len(fake_openai.requests) == 6
    assert run_stage(config, Evaluate())["task"] == task and len(fake_openai.requests) == 6  # cached
    judgments = tmp_path / "run" / "eval" / "base" / "task.judgments.jsonl"
    judgments.write_text("".join(judgments.read_text().splitlines(keepends=True)[:4]))  # as if interrupted
    assert run_stage(config, Evaluate())["task"] == task and len(fake_openai.requests) == 8  # the 2 missing ones


def test_one_judge_deciding_several_suites_loads_its_model_once(tiny_run, tmp_path, monkeypatch):
    import ssrtune.judges.llm as llm

    built, real_build_lm = [], llm.build_lm

    def counting_build_lm(*args, **kwargs):
        built.append(args)
        return real_build_lm(*args, **kwargs)

    monkeypatch.setattr(llm, "build_lm", counting_build_lm)
    judge = {"kind": "llm", "model": {"name": str(tiny_run.model), "dtype": "float32"}, "batch_size": 4}
    config = tiny_run.config(evaluate={"batch_size": 4, "max_new_tokens": 4, "judge": judge,
                                       "datasets": [{"name": "mine", "file": str(tiny_run.records)}]})
    results = run_stage(config, Evaluate())
    assert results["task"]["n"] == results["mine"]["n"] == 6
    assert sum(results["mine"]["verdicts"].values()) == 6
    assert len(built) == 1  # the task and the user set share the judge's model
