"""What the model sees: the chat turns of a record, and the one truncation rule that cuts them to fit.

The same prompt is used in generation, training and evaluation; documents cut to fit are counted in the run's
truncation.json.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ssrtune.data.schema import Record
from ssrtune.store import fingerprint, read_json, write_json

if TYPE_CHECKING:
    from ssrtune.config import RunConfig

log = logging.getLogger(__name__)

REFUSAL = "I cannot answer this question from the document."

# Short: it is part of every prompt, in generation, training and evaluation (34 tokens with SmolLM2's template).
SYSTEM_PROMPT = f'Answer with a few words from the document. If it does not contain the answer, reply: "{REFUSAL}"'


def prompt_messages(record: Record) -> list[dict[str, str]]:
    """The chat turns the model sees, identical in generation, training and evaluation.

    The grounding document goes into the final user turn, ahead of the question; our system prompt says how
    to answer, unless the record brings its own.
    """
    turns = [m.model_dump() for m in record.messages]
    if turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
    if record.context:
        turns[-1] = {"role": "user", "content": f"Document:\n{record.context}\n\nQuestion: {record.query}"}
    return turns


class PromptTooLongError(ValueError):
    pass


def _n_tokens(tokenizer, messages: list[dict[str, str]], completion: str | None) -> int:
    if completion is None:
        return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                 return_dict=False))
    # As TRL tokenizes a prompt/completion pair: the whole conversation, answer and end of turn included.
    return len(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": completion}],
                                             tokenize=True, return_dict=False))


def fit_prompt(record: Record, tokenizer, max_tokens: int, completion: str | None = None,
               reserve: int = 0) -> tuple[list[dict[str, str]], int]:
    """`prompt_messages(record)` cut to fit `max_tokens`, and the number of document tokens cut (0 if it fits).

    The one truncation rule, used alike by generation, training and evaluation: only the document is cut, keeping
    its beginning; the system prompt, the question and the gold answer are never cut. Generation keeps `reserve`
    tokens free for the new answer; training counts its `completion` (the target) whole, end of turn included.
    A record whose prompt and answer don't fit even with the document cut to one token is an error: truncating it
    would teach or ask something else.
    """
    messages = prompt_messages(record)
    excess = _n_tokens(tokenizer, messages, completion) + reserve - max_tokens
    if excess <= 0:
        return messages, 0
    document = tokenizer(record.context or "", add_special_tokens=False)["input_ids"]
    keep = len(document) - excess
    while keep >= 1:
        shorter = record.model_copy(update={"context": tokenizer.decode(document[:keep])})
        messages = prompt_messages(shorter)
        # Decoding and re-encoding a cut text can merge tokens differently: check, and cut further if needed.
        excess = _n_tokens(tokenizer, messages, completion) + reserve - max_tokens
        if excess <= 0:
            return messages, len(document) - keep
        keep -= excess
    raise PromptTooLongError(
        f"record {record.id!r}: the prompt without its document{' and the answer' if completion is not None else ''}"
        f" need more than {max_tokens - reserve} tokens (train.max_length or the model's context); "
        "raise the limit or shorten the question"
    )


def prompt_fingerprint(config: RunConfig) -> str:
    """What shapes the prompts besides the model's chat template: our system prompt and the context limit."""
    return fingerprint(SYSTEM_PROMPT, config.model.max_context)


def fitted_prompts(config: RunConfig, stage: str, records: list[Record], tokenizer, max_tokens: int,
                   targets: dict[str, str] | None = None, reserve: int = 0) -> dict[str, list[dict]]:
    """Each record's prompt under the truncation rule of `fit_prompt`; cut documents are counted in truncation.json
    under `stage` and logged."""
    prompts, cut = {}, {}
    for record in records:
        prompts[record.id], n_cut = fit_prompt(record, tokenizer, max_tokens,
                                               None if targets is None else targets[record.id], reserve)
        if n_cut:
            cut[record.id] = n_cut
    if cut:
        log.warning("%s: %d of %d prompts had their document cut to fit %d tokens (%d tokens cut in all)",
                    stage, len(cut), len(records), max_tokens, sum(cut.values()))
    path = config.path / "truncation.json"
    summary = read_json(path) if path.exists() else {}
    summary[stage] = {"prompts": len(records), "truncated": len(cut), "tokens_cut": sum(cut.values()),
                      "max_tokens": max_tokens, "ids": sorted(cut)}
    write_json(path, summary)
    return prompts
