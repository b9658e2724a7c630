import logging
import sys
import threading

import pytest

from ssrtune.config.fields import EndpointConfig
from ssrtune.net.endpoint import ChatEndpoint, EndpointError, parse_reply
from ssrtune.extras import MissingExtraError
from tests import fake_openai as fake
from tests.endpoint_client import KEY, chats, endpoint


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("SSRTUNE_TEST_KEY", KEY)


def test_answers_in_order_with_the_request_settings(fake_openai):
    results = endpoint(fake_openai).complete(chats(6), max_tokens=7)
    assert results == [f"echo: question {i}" for i in range(6)]
    request = fake_openai.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["json"]["model"] == "fake-model"
    assert request["json"]["max_tokens"] == 7 and request["json"]["temperature"] == 0.0
    assert request["json"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert request["headers"]["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("code", [429, 500, 503])
def test_retries_a_transient_status_then_succeeds(fake_openai, code):
    seen: dict[str, int] = {}

    def flaky(request):
        text = fake.last_user_text(request)
        seen[text] = seen.get(text, 0) + 1
        return fake.status(code) if seen[text] <= 2 else fake.echo(request)

    fake_openai.handler = flaky
    assert endpoint(fake_openai, max_retries=2).complete(chats(3), max_tokens=4) == [
        f"echo: question {i}" for i in range(3)]
    assert seen == {f"question {i}": 3 for i in range(3)}


def test_retries_exhausted_becomes_an_error_for_that_item_only(fake_openai):
    fake_openai.handler = lambda r: fake.status(500) if fake.last_user_text(r) == "question 1" else fake.echo(r)
    results = endpoint(fake_openai, max_retries=3).complete(chats(3), max_tokens=4)
    assert results[0] == "echo: question 0" and results[2] == "echo: question 2"
    assert isinstance(results[1], EndpointError)
    assert "HTTP 500" in str(results[1]) and "4 attempts" in str(results[1])
    assert sum(fake.last_user_text(r["json"]) == "question 1" for r in fake_openai.requests) == 4


def test_client_errors_are_not_retried(fake_openai):
    fake_openai.handler = lambda r: fake.status(400)
    [result] = endpoint(fake_openai, max_retries=3).complete(chats(1), max_tokens=4)
    assert isinstance(result, EndpointError) and "HTTP 400" in str(result)
    assert len(fake_openai.requests) == 1


def test_timeout_is_retried_then_reported(fake_openai):
    fake_openai.handler = lambda r: fake.hang(30)
    [result] = endpoint(fake_openai, timeout_s=0.3, max_retries=1).complete(chats(1), max_tokens=4)
    assert isinstance(result, EndpointError)
    assert "timed out after 0.3s" in str(result) and "2 attempts" in str(result)
    assert len(fake_openai.requests) == 2


def test_a_slow_reply_within_the_timeout_is_fine(fake_openai):
    fake_openai.handler = lambda r: fake.Behaviour(content="late", delay_s=0.3)
    assert endpoint(fake_openai, timeout_s=5).complete(chats(2), max_tokens=4) == ["late", "late"]


def test_closed_connection_is_retried(fake_openai):
    calls = []

    def drop_first(request):
        calls.append(request)
        return fake.close() if len(calls) == 1 else fake.echo(request)

    fake_openai.handler = drop_first
    assert endpoint(fake_openai, max_concurrency=1).complete(chats(2), max_tokens=4) == [
        "echo: question 0", "echo: question 1"]
    assert len(calls) == 3


def test_closed_connection_every_time_is_reported(fake_openai):
    fake_openai.handler = lambda r: fake.close()
    [result] = endpoint(fake_openai, max_retries=1).complete(chats(1), max_tokens=4)
    assert isinstance(result, EndpointError) and "connection failed" in str(result)


@pytest.mark.parametrize("behaviour, problem", [
    (fake.invalid_json(), "not valid JSON"),
    (fake.wrong_shape(), "no string at choices[0].message.content"),
    (fake.Behaviour(body=b'{"choices": []}'), "no string at choices[0].message.content"),
    (fake.Behaviour(body=b'[1, 2]'), "no string at choices[0].message.content"),
])
def test_garbage_replies_are_errors_without_retry(fake_openai, behaviour, problem):
    fake_openai.handler = lambda r: behaviour
    [result] = endpoint(fake_openai, max_retries=3).complete(chats(1), max_tokens=4)
    assert isinstance(result, EndpointError) and problem in str(result)
    assert len(fake_openai.requests) == 1


def test_parse_reply_accepts_an_empty_answer():
    assert parse_reply('{"choices": [{"message": {"role": "assistant", "content": ""}}]}') == ""


def test_concurrency_is_bounded(fake_openai):
    fake_openai.handler = lambda r: fake.Behaviour(content="x", delay_s=0.15)
    results = endpoint(fake_openai, max_concurrency=3).complete(chats(12), max_tokens=4)
    assert results == ["x"] * 12
    assert 1 < fake_openai.max_in_flight <= 3


def test_no_key_means_no_key_sent(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # must not be picked up when the config names no variable
    assert endpoint(fake_openai, api_key_env=None).complete(chats(1), max_tokens=4) == ["echo: question 0"]
    assert KEY not in str(fake_openai.requests[0]["headers"])


def test_missing_key_variable_is_a_clear_error(fake_openai, monkeypatch):
    monkeypatch.delenv("SSRTUNE_TEST_KEY")
    with pytest.raises(EndpointError, match="SSRTUNE_TEST_KEY is not set"):
        endpoint(fake_openai)


def test_key_never_appears_in_errors_or_logs(fake_openai, caplog):
    # A server that echoes the key back in its error body, as some do for a 401.
    leaky = fake.Behaviour(status=503, body=f'{{"error": "bad key {KEY}"}}'.encode())
    fake_openai.handler = lambda r: leaky
    config_dump = EndpointConfig(base_url=fake_openai.url, model="m", api_key_env="SSRTUNE_TEST_KEY").model_dump_json()
    with caplog.at_level(logging.DEBUG):
        chat = endpoint(fake_openai, max_retries=1)
        [result] = chat.complete(chats(1), max_tokens=4)
    assert isinstance(result, EndpointError) and "HTTP 503" in str(result) and "***" in str(result)
    assert KEY not in str(result) and KEY not in repr(result)
    assert KEY not in caplog.text and "retry 1/1" in caplog.text
    assert KEY not in config_dump and KEY not in str(vars(chat))
    assert fake_openai.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"  # it was sent, and only there


def test_missing_openai_package_says_how_to_install(fake_openai, monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # what `import openai` meets when it is not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'ssrtune\[openai\]'"):
        endpoint(fake_openai)


def test_fake_server_stops_with_hung_requests():
    server = fake.FakeOpenAI()
    server.handler = lambda r: fake.hang(60)
    config = EndpointConfig(base_url=server.url, model="m", api_key_env=None, timeout_s=30, max_retries=0)
    results = []
    worker = threading.Thread(target=lambda: results.extend(ChatEndpoint(config).complete(chats(1), 4)))
    worker.start()
    while not server.requests:
        worker.join(0.01)
    server.stop()  # releases the hung handler, which drops the connection
    worker.join(10)
    assert not worker.is_alive() and isinstance(results[0], EndpointError)
