"""The interface every model call goes through, in the shape of lm-evaluation-harness's `LM`.

`generate` answers prompts greedily (a chat conversation, rendered by the model's chat template, or raw text, as
is), `loglikelihood` scores a continuation after a context, `token_logprobs` gives whole next-token distributions (for
the KL from the base model, on the tokens `answer_tokens` makes), `harness_model` hands lm-evaluation-harness a model.
An engine declares which of them it can do (`engine.Capabilities`); the configuration refuses a suite an engine can't
serve before a run starts (config.EvaluateConfig), and a back-end asked anyway says so with `UnsupportedRequest`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar, Union

from ssrtune.inference.engine import ENGINES

if TYPE_CHECKING:
    import torch

# A chat conversation ([{role, content}, ...], answered as the assistant's next turn) or raw text (continued as is).
Prompt = Union[list[dict[str, str]], str]


class UnsupportedRequest(ValueError):
    """A request this back-end cannot serve (e.g. log-likelihoods from an OpenAI-compatible server)."""


class GenerationFailed(Exception):
    """A prompt an engine could not answer this time (a server's request that failed for good). It stands in the
    prompt's slot of `LM.generate`'s answers, so that one failure costs no other answer: the resumable loop writes no
    record for it (the next run asks again), and a stage that needs every answer raises it."""


class LM(ABC):
    """A model behind one engine. Used as a context manager: leaving it releases the model and its memory."""

    engine: ClassVar[str]
    # Prompts per call of the resumable generation loop (`generation.generate_into`): what a crash loses at most.
    chunk_size: int = 16
    tokens_generated: int = 0  # counted by the engines that see tokens, for the progress bar's tok/s

    def __enter__(self) -> LM:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the model (and the accelerator memory it holds)."""

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = (), *,
                 batch_size: int | None = None, description: str | None = None) -> list[str | GenerationFailed]:
        """The greedy continuation of each prompt, at most `max_new_tokens` long and cut before the first stop
        string; a prompt the engine could not answer is a `GenerationFailed` in its slot."""

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]], *, batch_size: int | None = None,
                      description: str | None = None) -> list[tuple[float, bool]]:
        """For each (context, continuation): log P(continuation | context), and whether greedy decoding would produce
        the continuation. Tokenized as lm-evaluation-harness does (`scoring.encode_request`)."""
        raise UnsupportedRequest(f"the {self.engine} engine gives no log-likelihoods (retention benchmarks and the "
                                 "llm judge's verdict scores need them): use engine "
                                 f"{ENGINES.that_can('loglikelihood')}")

    def token_logprobs(self, sequences: Sequence[list[int]], n_last: Sequence[int], *, batch_size: int | None = None,
                       description: str | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """For each token sequence, the log-probabilities ([n_last, vocab], float32) of the model's next-token
        distributions at its last `n_last` positions, as (index, tensor) in any order."""
        raise UnsupportedRequest(f"the {self.engine} engine gives no whole next-token distributions (the KL from the "
                                 "base model needs them): use engine "
                                 f"{ENGINES.that_can('next_token_distributions')}, or evaluate.retention.kl_prompts: 0")

    def answer_tokens(self, prompt: Prompt, answer: str) -> tuple[list[int], list[int]]:
        """The tokens of `prompt` as the model sees it, and of `answer` after it, ending the turn: a sequence
        `token_logprobs` scores (an engine that gives next-token distributions makes them)."""
        raise UnsupportedRequest(f"the {self.engine} engine does not say how it tokenizes (the KL from the base model "
                                 "needs its tokens)")

    def harness_model(self, batch_size: int):
        """The model as lm-evaluation-harness takes it (`lm_eval.simple_evaluate(model=...)`)."""
        raise UnsupportedRequest(f"the {self.engine} engine gives lm-evaluation-harness no model: use "
                                 "evaluate.retention.harness: native")

    def order(self, prompts: Sequence[Prompt]) -> list[int]:
        """The order the resumable loop should send prompts in (the transformers engine: longest first)."""
        return list(range(len(prompts)))
