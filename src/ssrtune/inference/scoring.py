"""Scoring given tokens with a local model: per-token log-probabilities and log-likelihoods of continuations, and
the harness's way of tokenizing a (context, continuation) pair.

Behind `TransformersLM.loglikelihood` and `.token_logprobs`: the `llm` judge (the verdict words after its prompt), the
retention benchmarks (each choice after its question) and the KL from the base model (whole next-token distributions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ssrtune.inference.padding import left_padded_batch
from ssrtune.models.placement import Placement
from ssrtune.progress import progress_bar


def max_length(model: PreTrainedModel) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048))


@torch.inference_mode()
def token_logprobs(model: PreTrainedModel, sequences: list[list[int]], n_last: list[int], batch_size: int,
                   placement: Placement, description: str | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """For each sequence, the model's log-probabilities (float32, [n_last, vocab]) predicting its last `n_last`
    tokens, yielded batch by batch as (index, tensor); with a progress bar when `description` is given.

    Sequences that need the same input (e.g. a context followed by one-token answers "A".."D") are run once.
    Left padding puts every scored position at the end, so the model projects only those through its LM head.
    """
    limit = max_length(model)
    inputs: dict[tuple[int, ...], list[int]] = {}
    for index, (sequence, n) in enumerate(zip(sequences, n_last)):
        if not 0 < n < len(sequence):
            raise ValueError(f"sequence {index}: can't score the last {n} of {len(sequence)} tokens")
        inputs.setdefault(tuple(sequence[:-1][-limit:]), []).append(index)
    order = sorted(inputs, key=len, reverse=True)
    # No bar without a description: a caller inside another bar's loop (the judge's) can't open a second one.
    with progress_bar(description) if description else contextlib.nullcontext() as bar:
        task = bar.add_task(description, total=len(sequences), rate="") if bar else None
        for start in range(0, len(order), batch_size):
            keys = order[start: start + batch_size]
            keep = max(n_last[i] for k in keys for i in inputs[k])
            # pad id 0: padded positions are masked out and never scored, so any id does
            batch = {k: v.to(model.device) for k, v in left_padded_batch([list(k) for k in keys], 0).items()}
            with placement.autocast():
                logits = model(**batch, use_cache=False, logits_to_keep=keep).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, key in enumerate(keys):
                for index in inputs[key]:
                    yield index, logprobs[row, logprobs.shape[1] - n_last[index]:]
                if bar:
                    bar.update(task, advance=len(inputs[key]))


def loglikelihoods(model: PreTrainedModel, requests: list[tuple[list[int], list[int]]], batch_size: int,
                   placement: Placement, description: str | None = None) -> list[tuple[float, bool]]:
    """For each (context tokens, continuation tokens): the log-likelihood of the continuation after the context,
    and whether greedy decoding would produce it."""
    out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
    for index, logprobs in token_logprobs(model, [c + x for c, x in requests], [len(x) for _, x in requests],
                                          batch_size, placement, description):
        target = torch.tensor(requests[index][1], device=logprobs.device)
        ll = float(logprobs.gather(-1, target[:, None]).sum())
        out[index] = (ll, bool((logprobs.argmax(-1) == target).all()))
    return out


def encode_request(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation tokens as lm-evaluation-harness makes them: trailing spaces of the context move to the
    continuation, and the continuation's tokens are those the whole text adds after the context's."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    return whole[:len(context_ids)], whole[len(context_ids):]
