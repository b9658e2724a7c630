"""The openai and vllm generation engines, their configuration, and how the pipeline handles failed requests (the
vllm engine's calls themselves: tests/unit/test_vllm_engine.py)."""

import json
import sys

import pytest

from ssrtune.config.run import ConfigError, load_config
from ssrtune.data.prompts import prompt_messages
from ssrtune.data.schema import Record
from ssrtune.extras import MissingExtraError
from ssrtune.inference.factory import build_lm
from ssrtune.inference.generation import generate_into
from ssrtune.inference.server import OpenAILM
from ssrtune.methods import METHODS
from ssrtune.config.fields import EndpointConfig
from ssrtune.stages.base import Run
from ssrtune.stages.data import Data
from ssrtune.stages.generate import Generate
from ssrtune.stages.judge import Judge
from ssrtune.stages.select import Select
from ssrtune.storage.artifacts import RecordFile
from tests import fake_openai as fake
from tests.commands import cli
from tests.tiny_run import record_dicts

KEY = "sk-engine-test-4b1d-not-a-real-key"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("SSRTUNE_TEST_KEY", KEY)


def records() -> list[Record]:
    return [Record.model_validate(r) for r in record_dicts()]


def record_id(request: dict) -> str:
    """Which record a request asks about, from the question at the end of its prompt."""
    text = fake.last_user_text(request)
    return next(r.id for r in records() if text.endswith(f"Question: {r.query}"))


def failing(broken: dict[str, fake.Behaviour]):
    """A handler answering `answer <id>`, except for the ids in `broken`."""
    def handler(request):
        rid = record_id(request)
        return broken.get(rid) or fake.answer(f" answer {rid} ")
    return handler


BROKEN = {"q2": fake.status(429), "q4": fake.status(500), "q5": fake.invalid_json(),
          "q6": fake.Behaviour(status=401, body=f'{{"error": "invalid key {KEY}"}}'.encode())}


def endpoint_config(server, **overrides) -> EndpointConfig:
    return EndpointConfig(**{"base_url": server.url, "model": "served-model", "api_key_env": "SSRTUNE_TEST_KEY",
                             "max_concurrency": 2, "max_retries": 1, "backoff_s": 0.01, **overrides})


def test_openai_engine_writes_answers_counts_failures_and_retries_only_those(fake_openai, tmp_path):
    prompts = {r.id: prompt_messages(r) for r in records()}
    fake_openai.handler = failing(BROKEN)
    chat = OpenAILM(endpoint_config(fake_openai))
    failures = generate_into(chat, prompts, RecordFile(tmp_path / "g.jsonl", "fp"), max_new_tokens=9, description="g")
    assert sorted(failures) == ["q2", "q4", "q5", "q6"]
    assert "HTTP 429" in failures["q2"] and "HTTP 500" in failures["q4"] and "not valid JSON" in failures["q5"]
    assert "HTTP 401" in failures["q6"] and KEY not in failures["q6"]
    # The same prompts as the transformers engine, greedy, with the configured budget and model.
    sent = {record_id(r["json"]): r["json"] for r in fake_openai.requests}
    assert all(sent[i]["messages"] == prompts[i] for i in prompts)
    assert {(s["temperature"], s["max_tokens"], s["model"]) for s in sent.values()} == {(0.0, 9, "served-model")}
    # Transient failures were retried (2 attempts each); garbage and a refused key were not.
    attempts = [record_id(r["json"]) for r in fake_openai.requests]
    assert {i: attempts.count(i) for i in prompts} == {"q1": 1, "q2": 2, "q3": 1, "q4": 2, "q5": 1, "q6": 1}

    out = RecordFile(tmp_path / "g.jsonl", "fp")  # a resumed run
    assert {i: r["response"] for i, r in out.records.items()} == {i: f"answer {i}" for i in ("q1", "q3")}
    fake_openai.requests.clear()
    fake_openai.handler = failing({})
    assert generate_into(chat, prompts, out, max_new_tokens=9, description="g") == {}
    assert sorted(record_id(r["json"]) for r in fake_openai.requests) == ["q2", "q4", "q5", "q6"]
    lines = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert sorted(row["id"] for row in lines) == sorted(prompts)  # each id exactly once
    assert all(set(row) == {"id", "response"} for row in lines)


def run_config(tmp_path, records_file, *overrides, **generate):
    return load_config(None, [
        f"run_dir={tmp_path / 'run'}", "data.recipe=null", f"data.train_file={records_file}",
        f"data.test_file={records_file}", *(f"generate.{k}={json.dumps(v)}" for k, v in generate.items()), *overrides])


def test_pipeline_with_failed_requests_falls_back_to_gold_and_resumes(fake_openai, tmp_path, records_file):
    config = run_config(tmp_path, records_file, engine="openai", max_new_tokens=12,
                        endpoint=endpoint_config(fake_openai).model_dump())
    runner = Run(config)
    train_records, _ = runner(Data())
    gold = {r.id: r.response for r in train_records}
    # Answer each question with its gold answer, so the rule judge accepts every answer it sees.
    fake_openai.handler = lambda r: BROKEN.get(record_id(r)) or fake.answer(gold[record_id(r)])
    generations = runner(Generate())
    assert sorted(generations) == ["q1", "q3"]
    report = json.loads((config.path / "generations.failures.json").read_text())
    assert report["n_failed"] == 4 and sorted(report["failures"]) == ["q2", "q4", "q5", "q6"]

    judgments = runner(Judge())
    assert sorted(judgments) == ["q1", "q3"] and {j["verdict"] for j in judgments.values()} == {"accept"}
    rows = runner(Select(METHODS["ssr"]))
    assert {r["id"]: r["source"] for r in rows} == {"q1": "self", "q2": "gold", "q3": "self", "q4": "gold",
                                                     "q5": "gold", "q6": "gold"}

    fake_openai.requests.clear()
    fake_openai.handler = lambda r: fake.answer(gold[record_id(r)])
    rerun = Run(config)
    generations = rerun(Generate())  # a rerun: only the failed prompts are asked
    assert sorted(record_id(r["json"]) for r in fake_openai.requests) == ["q2", "q4", "q5", "q6"]
    assert sorted(generations) == sorted(gold)
    assert json.loads((config.path / "generations.failures.json").read_text())["n_failed"] == 0
    judgments = rerun(Judge())  # earlier verdicts stay valid
    assert sorted(judgments) == sorted(gold)
    rows = rerun(Select(METHODS["ssr"]))
    assert {r["source"] for r in rows} == {"self"}
    for path in config.path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(encoding="utf-8"), path


def test_engine_and_endpoint_settings_are_checked_together(tmp_path, records_file):
    with pytest.raises(ConfigError, match="endpoint"):
        run_config(tmp_path, records_file, engine="openai")
    with pytest.raises(ConfigError, match="endpoint"):
        run_config(tmp_path, records_file, endpoint={"base_url": "http://127.0.0.1:1/v1", "model": "m"})
    with pytest.raises(ConfigError, match=r"generate.endpoint.max_concurrency"):
        run_config(tmp_path, records_file, engine="openai",
                   endpoint={"base_url": "http://127.0.0.1:1/v1", "model": "m", "max_concurrency": 0})
    with pytest.raises(ConfigError, match=r"vllm.tensor_parallel_size"):
        run_config(tmp_path, records_file, "vllm.tensor_parallel_size=0", engine="vllm")
    config = run_config(tmp_path, records_file, "vllm.tensor_parallel_size=4", engine="vllm")
    assert (config.generate.engine, config.vllm.tensor_parallel_size) == ("vllm", 4)


def test_vllm_engine_without_vllm_says_how_to_install(tmp_path, records_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` meets when it is not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'ssrtune\[vllm\]'"):
        build_lm("vllm", load_config(None).model)
    config = run_config(tmp_path, records_file, engine="vllm")
    with pytest.raises(MissingExtraError, match="the vllm engine"):
        Run(config)(Generate())


def test_cli_generate_reports_failures_and_user_errors(fake_openai, tmp_path, records_file, monkeypatch, capsys):
    config = tmp_path / "c.yaml"
    endpoint = endpoint_config(fake_openai).model_dump()
    config.write_text(json.dumps({"run_dir": str(tmp_path / "run"), "data": {
        "recipe": None, "train_file": str(records_file), "test_file": str(records_file)},
        "generate": {"engine": "openai", "endpoint": endpoint}}))
    fake_openai.handler = failing({"q3": fake.status(503)})
    status, out, _ = cli(monkeypatch, capsys, "generate", config)
    assert status == 0 and "5 generations, 1 failed (rerun to retry them)" in out
    monkeypatch.delenv("SSRTUNE_TEST_KEY")
    status, _, err = cli(monkeypatch, capsys, "generate", config)
    assert status == 2 and "error: the API key variable SSRTUNE_TEST_KEY is not set" in err
    monkeypatch.setitem(sys.modules, "vllm", None)
    status, _, err = cli(monkeypatch, capsys, "generate", config, "--fresh", "generate.engine=vllm",
                         "generate.endpoint=null")
    assert status == 2 and "pip install 'ssrtune[vllm]'" in err
