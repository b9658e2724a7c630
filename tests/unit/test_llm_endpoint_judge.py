"""The LLM judge against an OpenAI-compatible server: the strict reply parser, and a fake server on 127.0.0.1
that errs, hangs, talks garbage or replies slowly. Every failure is a counted `failed` verdict, never a crash."""

import pytest

from ssrtune.judges.base import JudgeInput, verdict_counts
from ssrtune.judges.factory import build_judge
from ssrtune.config.judges import EndpointLLMJudgeConfig
from ssrtune.judges.llm import parse_verdict
from ssrtune.config.fields import EndpointConfig
from ssrtune.stages.judge import judge_all
from ssrtune.storage.artifacts import RecordFile
from tests import fake_openai as fake

WORDS = ("Yes", "No")


@pytest.mark.parametrize("reply,verdict", [
    ("Yes", "accept"), ("no", "reject"), ("  YES.\n", "accept"), ("**No**", "reject"), ('"Yes"', "accept"),
    ("`no`!", "reject"), ("<think>The gold says Anna... so no.</think>\nYes", "accept"),
    ("Yes, because the answer matches.", None), ("Verdict: Yes", None), ("Yes No", None), ("", None),
    ("Yes..", None), ("Yess", None), ("<think>unfinished Yes", None), ("Ye s", None), ("是", None),
])
def test_parser_accepts_one_verdict_word_and_nothing_else(reply, verdict):
    assert parse_verdict(reply, WORDS) == verdict


def test_parser_uses_the_configured_words():
    assert parse_verdict("correct", ("CORRECT", "INCORRECT")) == "accept"
    assert parse_verdict("Incorrect.", ("CORRECT", "INCORRECT")) == "reject"
    assert parse_verdict("Yes", ("CORRECT", "INCORRECT")) is None


def judge_for(server, **endpoint):
    settings = {"base_url": server.url, "model": "judge-model", "api_key_env": None, "timeout_s": 2,
                "max_retries": 1, "backoff_s": 0.0, **endpoint}
    return build_judge(EndpointLLMJudgeConfig(engine="openai", endpoint=EndpointConfig(**settings)))


def items():
    return [JudgeInput(f"q{i}", f"question {i}", "A document.", "Anna", f"candidate {i}", ["Anna"]) for i in range(8)]


def test_every_kind_of_failure_is_a_counted_failed_verdict(fake_openai, tmp_path):
    replies = {"candidate 0": fake.answer("Yes"), "candidate 1": fake.answer("No."),
               "candidate 2": fake.answer("Maybe, it depends"), "candidate 3": fake.status(500),
               "candidate 4": fake.hang(30), "candidate 5": fake.invalid_json(), "candidate 6": fake.wrong_shape(),
               "candidate 7": fake.Behaviour(content="yes", delay_s=0.3)}  # slow, within the timeout

    def handler(request):
        return next(b for c, b in replies.items() if f"Candidate answer: {c}\n" in fake.last_user_text(request))

    fake_openai.handler = handler
    out = RecordFile(tmp_path / "judgments.jsonl", "fp")
    judgments = judge_all(judge_for(fake_openai, timeout_s=1.0), items(), out)
    assert [judgments[f"q{i}"]["verdict"] for i in range(8)] == [
        "accept", "reject", "failed", "failed", "failed", "failed", "failed", "accept"]
    assert verdict_counts(judgments) == {"accept": 2, "reject": 1, "failed": 5}
    assert "unparseable reply 'Maybe, it depends'" in judgments["q2"]["rationale"]
    assert judgments["q3"]["rationale"].startswith("endpoint: ") and "500" in judgments["q3"]["rationale"]
    request = fake_openai.requests[0]["json"]
    assert request["model"] == "judge-model" and request["temperature"] == 0.0 and request["max_tokens"] == 8
    prompt = request["messages"][-1]["content"]
    assert "Reference answer: Anna" in prompt and prompt.endswith("Reply with one word: Yes or No.")
    # the verdicts are cached: a rerun asks the server nothing, even with the server gone
    n_requests = len(fake_openai.requests)
    fake_openai.handler = lambda r: fake.status(500)
    again = judge_all(judge_for(fake_openai), items(), RecordFile(tmp_path / "judgments.jsonl", "fp"))
    assert again == judgments and len(fake_openai.requests) == n_requests


def test_endpoint_settings_are_validated():
    from ssrtune.config.run import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"judge\.endpoint: Field required"):
        load_config(None, ["judge={kind: llm, engine: openai}"])
    with pytest.raises(ConfigError, match="`endpoint` does not apply to a judge of kind `llm` with engine transformers"):
        load_config(None, ["judge={kind: llm, endpoint: {base_url: 'http://x/v1', model: m}}"])
    for key in ("model: {name: x}", "threshold: 0.7", "bf16: false", "batch_size: 4"):
        name = key.split(":")[0]
        with pytest.raises(ConfigError, match=f"`{name}` does not apply to a judge of kind `llm` with engine openai"):
            load_config(None, [f"judge={{kind: llm, engine: openai, {key}, endpoint: {{base_url: 'http://x/v1', "
                               "model: m}}"])
    with pytest.raises(ConfigError, match=r"judge\.engine: an `llm` judge's engine is transformers, vllm or openai"):
        load_config(None, ["judge={kind: llm, engine: cloud}"])
