"""A stand-in for vLLM in tests (vLLM needs a GPU): records every call as a JSON line in $FAKE_VLLM_LOG, with the
process id, and answers deterministically. Tests put its folder (tests/fake_vllm) first on sys.path, which a spawned
child process inherits too."""

import json
import os
from dataclasses import dataclass


def record(event: str, **data) -> None:
    with open(os.environ["FAKE_VLLM_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"event": event, "pid": os.getpid(), **data}) + "\n")


class SamplingParams:
    def __init__(self, temperature=1.0, max_tokens=16, stop=None, prompt_logprobs=None):
        self.temperature, self.max_tokens, self.stop, self.prompt_logprobs = temperature, max_tokens, stop, prompt_logprobs


@dataclass
class Logprob:
    logprob: float
    rank: int


def prompt_logprob(token: int) -> Logprob:
    """The fake model's log-probability of a prompt token, and its rank: first for even token ids."""
    return Logprob(-(token % 7 + 1) / 10, 1 + token % 2)


@dataclass
class Completion:
    text: str
    token_ids: list


@dataclass
class RequestOutput:
    outputs: list
    prompt_logprobs: list | None


class LLM:
    def __init__(self, model, **settings):
        record("LLM", model=model, settings=settings)

    def generate(self, prompts, sampling_params, use_tqdm=True, lora_request=None):
        params = vars(sampling_params)
        record("generate", prompts=[p["prompt_token_ids"] for p in prompts], params=params,
               lora=None if lora_request is None else [lora_request.lora_name, lora_request.lora_int_id,
                                                       lora_request.lora_path])
        outputs = []
        for prompt in prompts:
            ids = prompt["prompt_token_ids"]
            logprobs = None
            if params["prompt_logprobs"] is not None:
                logprobs = [None] + [{token: prompt_logprob(token)} for token in ids[1:]]
            tokens = list(range(min(params["max_tokens"], 3)))
            outputs.append(RequestOutput([Completion(f" answer to {len(ids)} tokens", tokens)], logprobs))
        return outputs
