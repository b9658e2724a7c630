"""Batched greedy generation with the transformers engine, resumable through a `RecordFile`."""

from __future__ import annotations

import contextlib
import time
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ssrtune.models import bf16_supported
from ssrtune.store import RecordFile

Prompt = list[dict[str, str]]


def progress_bar(description: str) -> Progress:
    return Progress(
        TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=False,
    )


def autocast(enabled: bool | None, device_type: str):
    """bf16 autocast where asked for, or by default where the hardware runs bf16 natively."""
    use = bf16_supported() if enabled is None else enabled
    return torch.autocast(device_type, dtype=torch.bfloat16) if use else contextlib.nullcontext()


def generate_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt],
                   max_new_tokens: int, bf16: bool | None = None) -> tuple[list[str], int]:
    """Greedy answers to a batch of chat prompts, and the number of tokens generated."""
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    return complete_batch(model, tokenizer, texts, max_new_tokens, bf16)


@torch.inference_mode()
def complete_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                   max_new_tokens: int, bf16: bool | None = None,
                   stop_strings: list[str] | None = None) -> tuple[list[str], int]:
    """Greedy continuations of a batch of raw texts (cut before the first stop string), and the token count."""
    # Left padding keeps every prompt's last token at the end, where generation continues.
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with autocast(bf16, model.device.type):
        output = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            **({"stop_strings": stop_strings, "tokenizer": tokenizer} if stop_strings else {}),
        )
    new_tokens = output[:, batch["input_ids"].shape[1]:]
    n_tokens = int((new_tokens != tokenizer.pad_token_id).sum())
    answers = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    for stop in stop_strings or []:
        answers = [a.split(stop)[0] for a in answers]
    return answers, n_tokens


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: dict[str, Prompt],
             out: RecordFile, batch_size: int, max_new_tokens: int, bf16: bool | None = None,
             description: str = "generate") -> dict[str, dict]:
    """Answer every prompt not yet in `out`, appending each finished batch; returns all records of `out`.

    Prompts are sorted by length so that a batch holds prompts of similar length and little padding.
    """
    todo = [i for i in prompts if i not in out]
    lengths = {i: len(tokenizer.apply_chat_template(prompts[i], tokenize=True, add_generation_prompt=True))
               for i in todo}
    todo.sort(key=lambda i: lengths[i], reverse=True)
    start, n_tokens = time.perf_counter(), 0
    with progress_bar(description) as bar:
        task = bar.add_task(description, total=len(prompts), completed=len(prompts) - len(todo), rate="")
        for offset in range(0, len(todo), batch_size):
            ids = todo[offset: offset + batch_size]
            answers, batch_tokens = generate_batch(model, tokenizer, [prompts[i] for i in ids], max_new_tokens, bf16)
            out.append({"id": i, "response": a.strip()} for i, a in zip(ids, answers))
            n_tokens += batch_tokens
            elapsed = time.perf_counter() - start
            done = offset + len(ids)
            bar.update(task, advance=len(ids), rate=f"{done / elapsed:.2f} ex/s {n_tokens / elapsed:.0f} tok/s")
    return out.records
