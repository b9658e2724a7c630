"""The endpoint client's limits against a hostile server (tests/fake_openai.py): a total deadline per request however
the server trickles its reply, a reply size cap, no compressed replies, and nothing from the server reaching the
console with its control sequences."""

import gzip
import json
import time

import pytest

from ssrtune.net.endpoint import EndpointError
from tests import fake_openai as fake
from tests.endpoint_client import KEY, chats, endpoint


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("SSRTUNE_TEST_KEY", KEY)


@pytest.mark.parametrize("drip_headers", [True, False], ids=["headers-and-body", "body"])
def test_a_reply_trickled_a_byte_at_a_time_ends_at_the_total_deadline(fake_openai, drip_headers):
    """Each byte comes 0.05 s after the last (from the status line on, or once the headers are in): every read
    succeeds within any per-read timeout, and the reply of 300 bytes or more would take 15 s or more."""
    fake_openai.handler = lambda r: fake.Behaviour(content="x" * 200, drip_s=0.05, drip_headers=drip_headers)
    start = time.monotonic()
    [result] = endpoint(fake_openai, timeout_s=1, max_retries=1).complete(chats(1), max_tokens=4)
    elapsed = time.monotonic() - start
    assert isinstance(result, EndpointError) and "request timed out after 1s" in str(result)
    assert "2 attempts" in str(result) and elapsed < 8, elapsed


def test_a_reply_in_time_is_still_answered_with_the_deadline_armed(fake_openai):
    fake_openai.handler = lambda r: fake.Behaviour(content="late", delay_s=0.2)
    assert endpoint(fake_openai, timeout_s=2).complete(chats(3), max_tokens=4) == ["late"] * 3


@pytest.mark.parametrize("status", [200, 500])
def test_a_reply_over_the_size_cap_is_refused_without_retry(fake_openai, status):
    huge = b'{"error": "' + b"x" * 3_000_000 + b'"}' if status != 200 else None
    fake_openai.handler = lambda r: fake.Behaviour(content="y" * 3_000_000, status=status, body=huge)
    [result] = endpoint(fake_openai, max_reply_bytes=100_000, max_retries=2).complete(chats(1), max_tokens=8)
    assert isinstance(result, EndpointError)
    assert str(result) == "reply larger than 100000 bytes (endpoint.max_reply_bytes)"
    assert len(fake_openai.requests) == 1


def test_a_reply_under_the_cap_is_taken(fake_openai):
    fake_openai.handler = lambda r: fake.answer("z" * 50_000)
    assert endpoint(fake_openai, max_reply_bytes=100_000).complete(chats(1), max_tokens=8) == ["z" * 50_000]


def test_replies_are_asked_uncompressed_and_a_compressed_one_is_refused(fake_openai, monkeypatch):
    body = gzip.compress(json.dumps(fake.completion("zipped", "m")).encode())
    fake_openai.handler = lambda r: fake.Behaviour(body=body, headers={"Content-Encoding": "gzip"})
    [result] = endpoint(fake_openai).complete(chats(1), max_tokens=8)
    assert fake_openai.requests[0]["headers"]["accept-encoding"] == "identity"
    assert isinstance(result, EndpointError) and "compressed (gzip)" in str(result)


def test_control_sequences_from_the_server_do_not_reach_the_message(fake_openai):
    hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m\rline\x08\x9b31m\x00 end"
    fake_openai.handler = lambda r: fake.Behaviour(status=400, body=json.dumps({"error": hostile}).encode())
    [result] = endpoint(fake_openai).complete(chats(1), max_tokens=8)
    assert str(result) == 'HTTP 400: {"error": "\\u001b]0;pwned\\u0007\\u001b[2J\\u001b[31mred\\u001b[0m\\rline\\b' \
                          '\\u009b31m\\u0000 end"}'  # JSON-escaped as the server sent it: harmless
    fake_openai.handler = lambda r: fake.Behaviour(status=400, body=f'{{"error": "{hostile}"}}'.encode())
    [result] = endpoint(fake_openai).complete(chats(1), max_tokens=8)
    assert str(result) == 'HTTP 400: {"error": "red line 31m end"}'


def test_a_key_beyond_ascii_is_a_clear_error_before_any_request(fake_openai, monkeypatch):
    monkeypatch.setenv("SSRTUNE_TEST_KEY", "sk-café-123")
    with pytest.raises(EndpointError, match="the API key in SSRTUNE_TEST_KEY holds characters an HTTP header cannot "
                                            "carry") as err:
        endpoint(fake_openai)
    assert "café" not in str(err.value) and fake_openai.requests == []
