"""A `ChatEndpoint` on the fake server of tests/fake_openai.py: its key, its settings, and chats to send it."""

from ssrtune.config.fields import EndpointConfig
from ssrtune.net.endpoint import ChatEndpoint

KEY = "sk-test-7f3a9c1e-not-a-real-key"


def endpoint(server, **overrides) -> ChatEndpoint:
    settings = dict(base_url=server.url, model="fake-model", api_key_env="SSRTUNE_TEST_KEY", max_concurrency=4,
                    timeout_s=5, max_retries=2, backoff_s=0.01)
    return ChatEndpoint(EndpointConfig(**(settings | overrides)))


def chats(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"question {i}"}]
            for i in range(n)]
