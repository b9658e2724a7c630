"""A client for OpenAI-compatible chat-completions servers (OpenAI, vLLM serve, llama.cpp server, TGI).

One batch call answers many conversations with bounded concurrency. Each request has a total deadline and a reply
size cap (`ssrtune.net.bounded_http`) and is retried with exponential backoff after a rate limit (429), a server error
(5xx, 408, 409), a timeout or a lost connection. A reply is accepted only if it is JSON with a string at
`choices[0].message.content`. A request that still fails becomes an `EndpointError` in its slot of the result list,
so one bad item never sinks a batch.

The API key is read from the named environment variable for the duration of a batch only (surrounding whitespace
dropped: a key read from a file often ends in a line break); it is never stored on this object. Whatever a server or
the client library says reaches an error message only through `scrub.safe_text`: the key redacted in each form it may
take (a server may echo it back in a 401 body), control sequences removed, then cut short. Which server may receive
the key at all is the configuration's rule (`schema.EndpointConfig`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

from ssrtune.extras import import_extra
from ssrtune.config.fields import EndpointConfig
from ssrtune.net.scrub import safe_text

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]

# Statuses worth asking again: request timeout, conflict/lock timeout, rate limit; and every 5xx.
RETRY_STATUSES = frozenset({408, 409, 429})
# A server without authentication still needs some key in the client; vLLM's docs use this one.
NO_KEY = "EMPTY"


class EndpointError(Exception):
    """A request that failed for good: says what failed (status, timeout, bad JSON, wrong shape), never the key."""


def parse_reply(body: str, secrets: tuple[str, ...] = ()) -> str:
    """The answer text of a chat-completions reply body, or `ValueError` saying what is wrong with it (quoting the
    body with `secrets` redacted)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError(f"reply is not valid JSON: {safe_text(body, secrets)!r}") from None
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str):
        raise ValueError(f"reply has no string at choices[0].message.content: {safe_text(body, secrets)!r}")
    return content


class ChatEndpoint:
    def __init__(self, config: EndpointConfig):
        self.config = config
        self._openai = import_extra("openai", "openai", "talking to an OpenAI-compatible server")
        self._api_key()  # fail before any work when the variable is missing

    def _api_key(self) -> str:
        name = self.config.api_key_env
        if name is None:
            return NO_KEY
        key = os.environ.get(name, "").strip()
        if not key:
            raise EndpointError(f"the API key variable {name} is not set (endpoint.api_key_env)")
        if not (key.isascii() and key.isprintable()) or " " in key:
            raise EndpointError(f"the API key in {name} holds characters an HTTP header cannot carry (beyond ASCII, "
                                "a space or a control character): set it again, copied as plain text")
        return key

    def complete(self, conversations: list[Conversation], max_tokens: int,
                 temperature: float = 0.0) -> list[str | EndpointError]:
        """The answer to each conversation, in order; a request that failed for good is an `EndpointError`."""
        from ssrtune.net.bounded_http import BoundedHTTP

        key = self._api_key()
        bounds = BoundedHTTP(self.config.timeout_s, self.config.max_reply_bytes)
        # The client's own retries are off: ours are bounded by the config, back off by the config, and know
        # which failures are worth retrying. It is one client for all threads (httpx clients are thread-safe).
        client = self._openai.OpenAI(base_url=self.config.base_url, api_key=key, timeout=self.config.timeout_s,
                                     max_retries=0, http_client=bounds.client())
        try:
            with ThreadPoolExecutor(max_workers=self.config.max_concurrency, thread_name_prefix="endpoint") as pool:
                return list(pool.map(
                    lambda conv: self._complete_one(client, bounds, key, conv, max_tokens, temperature),
                    conversations))
        finally:
            client.close()

    def _complete_one(self, client, bounds, key: str, conversation: Conversation, max_tokens: int,
                      temperature: float) -> str | EndpointError:
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._request(client, bounds, key, conversation, max_tokens, temperature)
            except _Failure as failure:
                problem = str(failure)
                if not failure.retryable:
                    return EndpointError(problem)
            if attempt + 1 < attempts:
                # Exponential backoff with jitter, so that requests that failed together do not retry together.
                delay = self.config.backoff_s * 2 ** attempt * random.uniform(0.5, 1.0)
                log.debug("%s; retry %d/%d in %.2fs", problem, attempt + 1, self.config.max_retries, delay)
                time.sleep(delay)
        return EndpointError(f"{problem} (gave up after {attempts} attempt{'s' * (attempts > 1)})")

    def _request(self, client, bounds, key: str, conversation: Conversation, max_tokens: int,
                 temperature: float) -> str:
        """One request, under the total deadline; every text from outside in its failure goes through `safe_text`."""
        from ssrtune.net.bounded_http import ReplyRefused

        openai, secrets = self._openai, (key,) if key != NO_KEY else ()
        timed_out = _Failure(f"request timed out after {self.config.timeout_s:g}s (endpoint.timeout_s, in all)",
                             retryable=True)
        with bounds.request() as deadline:
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model=self.config.model, messages=conversation, max_tokens=max_tokens, temperature=temperature)
                body = raw.http_response.text
            except openai.APITimeoutError:
                raise timed_out from None
            except openai.APIConnectionError as err:
                if deadline.expired:  # the deadline's timer shut the connection
                    raise timed_out from None
                cause = err.__cause__ or err
                raise _Failure(f"connection failed ({type(cause).__name__}: {safe_text(str(cause), secrets)})",
                               retryable=True) from None
            except openai.APIStatusError as err:
                status = err.status_code
                raise _Failure(f"HTTP {status}: {safe_text(err.response.text, secrets)}",
                               retryable=status in RETRY_STATUSES or status >= 500) from None
            except ReplyRefused as err:
                raise _Failure(str(err), retryable=False) from None
        # A 200 reply that is not a chat completion is not retried: the server answered, and asking again would
        # most likely get the same answer. The item fails now and is retried by the next run.
        try:
            return parse_reply(body, secrets)
        except ValueError as err:
            raise _Failure(str(err), retryable=False) from None


class _Failure(Exception):
    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable
