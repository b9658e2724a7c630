"""The API key: read stripped, redacted in every form a message carries it before the message is cut, and sent only
where the configuration says, never in clear to another machine; a configuration that would leak it is refused
without repeating it."""

import json

import pytest
from pydantic import ValidationError

from ssrtune.config.run import ConfigError, load_config
from ssrtune.net.endpoint import EndpointError
from ssrtune.config.fields import EndpointConfig
from ssrtune.net.scrub import safe_text
from tests import fake_openai as fake
from tests.endpoint_client import KEY, chats, endpoint

QUOTED_KEY = 'sk-live-"quoted"\\and-slashed-0123456789'


def shows_any_of(text: str, key: str) -> bool:
    """Whether `text` holds 8 or more characters of `key` in a row."""
    return any(key[i:i + 8] in text for i in range(len(key) - 7))


@pytest.mark.parametrize("message", [
    lambda key: f"Illegal header value b'Bearer {key}\\r'",  # httpx2's error for a key read with its CRLF
    lambda key: f"bad key {key!r} given",
    lambda key: f"bad key {key.encode()!r}",
    lambda key: f"bad key {json.dumps(key)}",
    lambda key: f"{'x' * 190} {key}",  # the key where the message is cut
    lambda key: f"Incorrect API key provided: {key[:12]}*****{key[-4:]}",  # how OpenAI echoes a wrong key
])
@pytest.mark.parametrize("key", [KEY, QUOTED_KEY])
def test_every_form_of_the_key_is_redacted_before_the_cut(message, key):
    text = safe_text(message(key), [key])
    assert not shows_any_of(text, key) and len(text) <= 203 and "***" in text, text


def test_a_key_read_with_its_line_break_is_sent_stripped(fake_openai, monkeypatch):
    monkeypatch.setenv("SSRTUNE_TEST_KEY", f"  {KEY}\r\n")
    assert endpoint(fake_openai).complete(chats(1), max_tokens=4) == ["echo: question 0"]
    assert fake_openai.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"


def test_a_key_echoed_near_the_cut_of_an_error_is_redacted(fake_openai, monkeypatch):
    monkeypatch.setenv("SSRTUNE_TEST_KEY", KEY)
    body = {"error": "x" * 180 + KEY + "y" * 100}  # the first 200 characters end inside the key
    fake_openai.handler = lambda r: fake.Behaviour(status=401, body=json.dumps(body).encode())
    [result] = endpoint(fake_openai).complete(chats(1), max_tokens=4)
    assert isinstance(result, EndpointError) and "HTTP 401" in str(result)
    assert not shows_any_of(str(result), KEY) and "x***y" in str(result) and str(result).endswith("...")


def test_without_a_named_variable_a_server_gets_no_key(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    config = EndpointConfig(base_url=fake_openai.url, model="m")  # a lab's own server, its variable not named
    assert config.api_key_env is None
    from ssrtune.net.endpoint import ChatEndpoint

    assert ChatEndpoint(config).complete(chats(1), max_tokens=4) == ["echo: question 0"]
    assert KEY not in json.dumps(fake_openai.requests[0]["headers"])
    assert EndpointConfig(base_url="https://api.openai.com/v1", model="m").api_key_env == "OPENAI_API_KEY"


def endpoint_config(**endpoint) -> list[str]:
    return ["generate.engine=openai", f"generate.endpoint={json.dumps({'model': 'm', **endpoint})}"]


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000/v1", "http://gpu-box.lab:8000/v1"])
def test_a_key_is_not_sent_in_clear_to_another_machine(url):
    with pytest.raises(ConfigError, match=r"generate.endpoint: the API key would travel unencrypted"):
        load_config(None, endpoint_config(base_url=url, api_key_env="LAB_KEY"))
    for allowed in ({"base_url": url, "api_key_env": None},
                    {"base_url": url, "api_key_env": "LAB_KEY", "allow_insecure_http": True},
                    {"base_url": url.replace("http:", "https:"), "api_key_env": "LAB_KEY"},
                    {"base_url": "http://localhost:8000/v1", "api_key_env": "LAB_KEY"},
                    {"base_url": "http://127.0.0.2:8000/v1", "api_key_env": "LAB_KEY"},
                    {"base_url": "http://[::1]:8000/v1", "api_key_env": "LAB_KEY"}):
        load_config(None, endpoint_config(**allowed))


@pytest.mark.parametrize("settings, key, problem", [
    ({"base_url": "https://api.example.com/v1", "api_key_env": KEY}, "api_key_env",
     "must be the NAME of an environment variable"),
    ({"base_url": f"https://me:{KEY}@api.example.com/v1"}, "base_url", "must not hold a user name or password"),
    ({"base_url": f"https://{KEY}@api.example.com/v1"}, "base_url", "must not hold a user name or password"),
    ({"base_url": "ftp://files.example.com/v1"}, "base_url", "must be an http:// or https:// URL"),
])
def test_a_config_that_would_leak_the_key_is_refused_without_repeating_it(settings, key, problem):
    with pytest.raises(ConfigError) as err:
        load_config(None, endpoint_config(**settings))
    assert f"generate.endpoint.{key}: {problem}" in str(err.value) and KEY not in str(err.value)
    with pytest.raises(ValidationError) as err:
        EndpointConfig(model="m", **settings)
    assert problem in str(err.value) and KEY not in str(err.value)
