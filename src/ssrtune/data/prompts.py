"""What the model sees: the chat turns of a record, as the model's chat template takes them, and the one truncation
rule that cuts them to fit.

The same prompt is used in generation, training and evaluation; documents cut to fit are counted in the run's
truncation.json. The system prompt is the record's own system turn (the task brings it: data.recipes.grounded,
`data.system_prompt`, or the user's records); none is added here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ssrtune.data.chat_format import chat_turns, has_system_role, prompt_and_answer_ids
from ssrtune.data.schema import Record
from ssrtune.storage.artifacts import read_json, write_json
from ssrtune.storage.fingerprints import Digest, fingerprint

log = logging.getLogger(__name__)


def prompt_messages(record: Record) -> list[dict[str, str]]:
    """The record's chat turns, identical in generation, training and evaluation: its own system turn if it has
    one, and the grounding document in the final user turn, ahead of the question."""
    turns = [m.model_dump() for m in record.messages]
    if record.context:
        turns[-1] = {"role": "user", "content": f"Document:\n{record.context}\n\nQuestion: {record.query}"}
    return turns


def prompt_format(records: list[Record], tokenizer) -> dict:
    """How the prompts of `records` were made, for the model card: the system prompt (one text, none, or how many
    distinct ones), whether the template took it in the first user turn, and where the document goes."""
    systems = [r.messages[0].content for r in records if r.messages[0].role == "system"]
    distinct = sorted(set(systems))
    return {"system_prompt": distinct[0] if len(distinct) == 1 and len(systems) == len(records) else None,
            "distinct_system_prompts": len(distinct), "records_without_system_prompt": len(records) - len(systems),
            "system_folded_into_first_user_turn": bool(systems) and not has_system_role(tokenizer),
            "last_user_turn": r"Document:\n{context}\n\nQuestion: {question}" if any(r.context for r in records)
                              else None}


class PromptTooLongError(ValueError):
    pass


def _n_tokens(tokenizer, messages: list[dict[str, str]], completion: str | None, record: Record,
              model: str | None) -> int:
    if completion is None:
        return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                 return_dict=False))
    # As TRL tokenizes a prompt/completion pair: the whole conversation, answer and end of turn included; and the
    # prompt's tokens must be a prefix of them, or the loss would cover prompt tokens.
    return len(prompt_and_answer_ids(tokenizer, messages, completion, f"record {record.id!r}", model)[1])


def model_messages(record: Record, tokenizer, model: str | None = None) -> list[dict[str, str]]:
    """`prompt_messages(record)` as the model's chat template takes them (`chat_format.chat_turns`)."""
    return chat_turns(prompt_messages(record), tokenizer, model)


def fit_prompt(record: Record, tokenizer, max_tokens: int, completion: str | None = None,
               reserve: int = 0, model: str | None = None) -> tuple[list[dict[str, str]], int]:
    """`model_messages(record)` cut to fit `max_tokens`, and the number of document tokens cut (0 if it fits).

    The one truncation rule, used alike by generation, training and evaluation: only the document is cut, keeping
    its beginning; the system prompt, the question and the gold answer are never cut. Generation keeps `reserve`
    tokens free for the new answer; training counts its `completion` (the target) whole, end of turn included, and
    refuses a chat template whose prompt is not a prefix of prompt + answer (`chat_format.ChatTemplateError`, naming
    `model`). A record whose prompt and answer don't fit even with the document cut to one token is an error:
    truncating it would teach or ask something else.
    """
    messages = model_messages(record, tokenizer, model)
    excess = _n_tokens(tokenizer, messages, completion, record, model) + reserve - max_tokens
    if excess <= 0:
        return messages, 0
    document = tokenizer(record.context or "", add_special_tokens=False)["input_ids"]
    keep = len(document) - excess
    while keep >= 1:
        shorter = record.model_copy(update={"context": tokenizer.decode(document[:keep])})
        messages = model_messages(shorter, tokenizer, model)
        # Decoding and re-encoding a cut text can merge tokens differently: check, and cut further if needed.
        excess = _n_tokens(tokenizer, messages, completion, record, model) + reserve - max_tokens
        if excess <= 0:
            return messages, len(document) - keep
        keep -= excess
    raise PromptTooLongError(
        f"record {record.id!r}: the prompt without its document{' and the answer' if completion is not None else ''}"
        f" need more than {max_tokens - reserve} tokens (train.max_length or the model's context); "
        "raise the limit or shorten the question"
    )


def prompt_fingerprint(max_context: int | None) -> str:
    """What shapes the prompts besides the model's chat template and the records (whose system turn is the task's
    system prompt): the context limit (`model.max_context`), and the rule's name, so that answers made under the
    former rule (ssrtune's grounded-QA system prompt in front of every record) are not reused."""
    return fingerprint("task system turn, folded where the template has none", max_context)


def prompt_part(max_context: int | None) -> Digest:
    """`prompt_fingerprint` as a named part of a fingerprint, recorded with the setting behind it."""
    return Digest(prompt_fingerprint(max_context), {"model.max_context": max_context})


def fitted_prompts(truncation_file: Path, model: str, stage: str, records: list[Record], tokenizer, max_tokens: int,
                   targets: dict[str, str] | None = None, reserve: int = 0) -> dict[str, list[dict]]:
    """Each record's prompt under the truncation rule of `fit_prompt` (`model`, the model's name, for its errors);
    cut documents are counted in `truncation_file` (the run's truncation.json) under `stage` and logged."""
    prompts, cut = {}, {}
    for record in records:
        prompts[record.id], n_cut = fit_prompt(record, tokenizer, max_tokens,
                                               None if targets is None else targets[record.id], reserve, model)
        if n_cut:
            cut[record.id] = n_cut
    if cut:
        log.warning("%s: %d of %d prompts had their document cut to fit %d tokens (%d tokens cut in all)",
                    stage, len(cut), len(records), max_tokens, sum(cut.values()))
    summary = read_json(truncation_file) if truncation_file.exists() else {}
    summary[stage] = {"prompts": len(records), "truncated": len(cut), "tokens_cut": sum(cut.values()),
                      "max_tokens": max_tokens, "ids": sorted(cut)}
    write_json(truncation_file, summary)
    return prompts
