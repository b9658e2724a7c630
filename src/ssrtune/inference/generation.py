"""Greedy generation: the resumable loop every stage writes its answers with (any engine), and the transformers
engine's batch.

`generate_into` answers the prompts not yet in a `RecordFile` chunk by chunk, in the order the engine prefers, and
appends every chunk's records {id, response}: the same records from every engine, so a run can switch engine between
stages and a resumed run picks up where any engine stopped.
"""

from __future__ import annotations

import time

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ssrtune.data.chat_format import chat_turns, end_of_turn_ids
from ssrtune.inference.lm import LM, GenerationFailed, Prompt
from ssrtune.inference.padding import left_padded_batch
from ssrtune.models.placement import Placement
from ssrtune.progress import progress_bar, rate
from ssrtune.storage.artifacts import RecordFile


def prompt_text(tokenizer: PreTrainedTokenizerBase, prompt: Prompt) -> str:
    """A chat prompt rendered by the model's chat template, up to the assistant's turn (a system turn folded into the
    first user turn where the template has no system role: `chat_format.chat_turns`); raw text as it is."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(chat_turns(prompt, tokenizer), tokenize=False, add_generation_prompt=True)


@torch.inference_mode()
def complete_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_new_tokens: int,
                   placement: Placement, stop_strings: list[str] | None = None) -> tuple[list[str], int]:
    """Greedy continuations of a batch of texts (cut before the first stop string), and the token count. Each stops
    at the end of the assistant's turn as the chat template writes it (Gemma's <end_of_turn> is not its eos)."""
    # Left padding keeps every prompt's last token at the end, where generation continues.
    batch = left_padded_batch(tokenizer(texts, add_special_tokens=False)["input_ids"], tokenizer.pad_token_id)
    input_ids, attention_mask = batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device)
    with placement.autocast():
        output = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens, do_sample=False,
            temperature=None, top_p=None, top_k=None,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=end_of_turn_ids(tokenizer),
            **({"stop_strings": stop_strings, "tokenizer": tokenizer} if stop_strings else {}),
        )
    new_tokens = output[:, input_ids.shape[1]:]
    n_tokens = int((new_tokens != tokenizer.pad_token_id).sum())
    answers = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    for stop in stop_strings or []:
        answers = [a.split(stop)[0] for a in answers]
    return answers, n_tokens


def generate_into(lm: LM, prompts: dict[str, Prompt], out: RecordFile, max_new_tokens: int,
                  description: str) -> dict[str, str]:
    """Answer every prompt not yet in `out`, appending each finished chunk; returns the prompts the engine could not
    answer ({id: what failed}, e.g. a server's request that failed for good): they are not written, and the next run
    retries exactly those."""
    todo = [i for i in prompts if i not in out]
    todo = [todo[k] for k in lm.order([prompts[i] for i in todo])]
    failures: dict[str, str] = {}
    start, tokens_before = time.perf_counter(), lm.tokens_generated
    with progress_bar(description) as bar:
        task = bar.add_task(description, total=len(prompts), completed=len(prompts) - len(todo), rate="")
        for offset in range(0, len(todo), lm.chunk_size):
            ids = todo[offset: offset + lm.chunk_size]
            answers = lm.generate([prompts[i] for i in ids], max_new_tokens)
            out.append({"id": i, "response": a.strip()} for i, a in zip(ids, answers) if isinstance(a, str))
            failures.update((i, str(a)) for i, a in zip(ids, answers) if isinstance(a, GenerationFailed))
            tokens = lm.tokens_generated - tokens_before
            speed = rate(offset + len(ids), start) + (f" {tokens / (time.perf_counter() - start):.0f} tok/s"
                                                      if tokens else "")
            bar.update(task, advance=len(ids), rate=speed + (f", {len(failures)} failed" if failures else ""))
    return failures
