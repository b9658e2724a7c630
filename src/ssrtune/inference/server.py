"""The openai engine: any OpenAI-compatible chat-completions server (vLLM serve, llama.cpp server, TGI, OpenAI)
through `ssrtune.net.endpoint.ChatEndpoint` (bounded concurrency, retries, the key read from the environment).

Generation of chat prompts only, greedy; no log-likelihoods (`LM.loglikelihood` refuses). A request that failed for good
(the client's `EndpointError`) comes back as a `GenerationFailed` in its slot, never as an exception.
"""

from __future__ import annotations

from collections.abc import Sequence

from ssrtune.net.endpoint import ChatEndpoint, EndpointError
from ssrtune.inference.lm import LM, GenerationFailed, Prompt, UnsupportedRequest
from ssrtune.config.fields import EndpointConfig

# Requests per chunk of the resumable loop, in rounds of `max_concurrency`: the slowest request of a chunk idles the
# other workers, so a chunk spans several rounds; a crash loses at most one chunk.
ENDPOINT_ROUNDS_PER_CHUNK = 8


class OpenAILM(LM):
    """The model `config.model` on the server; the client (and the API key check) is made on first use, so that a
    rerun whose answers are all cached needs neither the server nor the key."""

    engine = "openai"

    def __init__(self, config: EndpointConfig, endpoint: ChatEndpoint | None = None):
        self.config = config
        self.chunk_size = ENDPOINT_ROUNDS_PER_CHUNK * config.max_concurrency
        self._endpoint = endpoint

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = (), *,
                 batch_size: int | None = None, description: str | None = None) -> list[str | GenerationFailed]:
        if any(isinstance(p, str) for p in prompts):
            raise UnsupportedRequest("the openai engine sends chat conversations; raw text prompts (e.g. GSM8K's "
                                     "few-shot text) need the transformers or vllm engine")
        self._endpoint = self._endpoint or ChatEndpoint(self.config)
        answers = [GenerationFailed(str(a)) if isinstance(a, EndpointError) else a
                   for a in self._endpoint.complete(list(prompts), max_new_tokens, temperature=0.0)]
        for text in stop:  # the server generates on; the answer ends where a stop string starts
            answers = [a.split(text)[0] if isinstance(a, str) else a for a in answers]
        return answers
