"""Greedy generation, resumable through a `RecordFile`, by one of three engines.

transformers: batched here, on CPU or GPU. openai: any OpenAI-compatible server (vLLM serve, llama.cpp server,
TGI). vllm: vLLM's offline engine on GPUs. Every engine answers the same chat prompts greedily and appends the
same records {id, response}, so a run can switch engine between stages and a resumed run picks up where any
engine stopped.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ssrtune.endpoint import ChatEndpoint, EndpointError
from ssrtune.extras import import_extra
from ssrtune.inference.padding import left_padded_batch
from ssrtune.models import load_model, load_tokenizer, resolve
from ssrtune.precision import autocast
from ssrtune.progress import progress_bar, rate
from ssrtune.schema import ModelConfig
from ssrtune.store import RecordFile

if TYPE_CHECKING:
    from ssrtune.config import GenerateConfig

Prompt = list[dict[str, str]]

# Server requests per written chunk, in rounds of `max_concurrency`: the slowest request of a chunk idles the
# other workers, so a chunk spans several rounds; a crash loses at most one chunk.
ENDPOINT_ROUNDS_PER_CHUNK = 8
# vLLM schedules its own batches within a chunk; chunks only bound what a crash loses.
VLLM_CHUNK = 1024


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
    batch = left_padded_batch(tokenizer(texts, add_special_tokens=False)["input_ids"], tokenizer.pad_token_id)
    input_ids, attention_mask = batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device)
    with autocast(bf16, model.device.type):
        output = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens, do_sample=False,
            temperature=None, top_p=None, top_k=None,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            **({"stop_strings": stop_strings, "tokenizer": tokenizer} if stop_strings else {}),
        )
    new_tokens = output[:, input_ids.shape[1]:]
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
    # return_dict=False: the token ids themselves (by default transformers returns a two-key BatchEncoding, whose
    # length, 2, would leave the batches unsorted)
    lengths = {i: len(tokenizer.apply_chat_template(prompts[i], add_generation_prompt=True, return_dict=False))
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


def generate_openai(endpoint: ChatEndpoint, prompts: dict[str, Prompt], out: RecordFile, max_new_tokens: int,
                    description: str = "generate") -> dict[str, str]:
    """Answer every prompt not yet in `out` through an OpenAI-compatible server, greedily; returns the failures.

    A request that failed for good (see `ssrtune.endpoint`) is not written: the failures come back as
    {id: what failed}, and the next run retries exactly those.
    """
    todo = [i for i in prompts if i not in out]
    chunk = ENDPOINT_ROUNDS_PER_CHUNK * endpoint.config.max_concurrency
    failures: dict[str, str] = {}
    start = time.perf_counter()
    with progress_bar(description) as bar:
        task = bar.add_task(description, total=len(prompts), completed=len(prompts) - len(todo), rate="")
        for offset in range(0, len(todo), chunk):
            ids = todo[offset: offset + chunk]
            answers = endpoint.complete([prompts[i] for i in ids], max_new_tokens, temperature=0.0)
            out.append({"id": i, "response": a.strip()} for i, a in zip(ids, answers) if isinstance(a, str))
            failures.update((i, str(a)) for i, a in zip(ids, answers) if isinstance(a, EndpointError))
            bar.update(task, advance=len(ids), rate=f"{rate(offset + len(ids), start)}, {len(failures)} failed")
    return failures


def generate_vllm(model: ModelConfig, prompts: dict[str, Prompt], out: RecordFile, max_new_tokens: int,
                  tensor_parallel_size: int = 1, description: str = "generate") -> dict[str, dict]:
    """Answer every prompt not yet in `out` with vLLM's offline engine, greedily, through the model's chat
    template (`LLM.chat`); returns all records of `out`."""
    vllm = import_extra("vllm", "vllm", "the vllm engine")
    todo = [i for i in prompts if i not in out]
    if not todo:
        return out.records
    source = resolve(model.name)
    llm = vllm.LLM(model=source, revision=model.revision if source == model.name else None,
                   trust_remote_code=model.trust_remote_code, tensor_parallel_size=tensor_parallel_size)
    greedy = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    start = time.perf_counter()
    with progress_bar(description) as bar:
        task = bar.add_task(description, total=len(prompts), completed=len(prompts) - len(todo), rate="")
        for offset in range(0, len(todo), VLLM_CHUNK):
            ids = todo[offset: offset + VLLM_CHUNK]
            outputs = llm.chat([prompts[i] for i in ids], sampling_params=greedy, use_tqdm=False)
            out.append({"id": i, "response": o.outputs[0].text.strip()} for i, o in zip(ids, outputs))
            bar.update(task, advance=len(ids), rate=rate(offset + len(ids), start))
    return out.records


def generate_answers(model: ModelConfig, settings: GenerateConfig, prompts: dict[str, Prompt], out: RecordFile,
                     description: str) -> dict[str, str]:
    """Greedy answers to the prompts not yet in `out` with the configured engine; returns the prompts whose
    endpoint requests failed for good (id -> error)."""
    prompts = {i: p for i, p in prompts.items() if i not in out}
    if not prompts:
        return {}
    description = f"{description} ({settings.engine})"
    if settings.engine == "openai":
        return generate_openai(ChatEndpoint(settings.endpoint), prompts, out, settings.max_new_tokens, description)
    if settings.engine == "vllm":
        generate_vllm(model, prompts, out, settings.max_new_tokens, settings.tensor_parallel_size, description)
    else:
        generate(load_model(model), load_tokenizer(model), prompts, out, settings.batch_size, settings.max_new_tokens,
                 settings.bf16, description)
    return {}
