"""Generation throughput: ssrtune's engine against naive transformers generation, and against this CPU's limit.

The same prompts (the quickstart's first training prompts) and greedy settings on both sides. The naive baseline is
`model.generate` in fp32, one prompt at a time, in data order; the engine is `ssrtune.inference.local.TransformersLM`
(length-sorted batches, bf16 where the CPU runs it natively). The same run measures this machine's limits in the
precision the engine computes in (`Placement.compute`: float32 on a CPU without native bf16, bf16 on one with it):
the matrix-multiply rate, against which prefill is measured, and the memory bandwidth, against which decode is (each
decode step of a batch reads every weight once).

    .venv/bin/python bench/generate.py [--n 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import quickstart, save, train_records

from ssrtune.data.prompts import prompt_messages
from ssrtune.inference.generation import generate_into
from ssrtune.inference.local import TransformersLM
from ssrtune.storage.artifacts import RecordFile


def matmul_gflops(dtype: torch.dtype, size: int = 1024, seconds: float = 2.0) -> float:
    """Best sustained rate of a square matmul; the best of several rounds, since the machine may be shared."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * size**3 / (time.perf_counter() - start))
    return best / 1e9


def copy_gb_per_s(megabytes: int = 512, seconds: float = 2.0) -> float:
    """Best sustained memory bandwidth: a large copy reads and writes every byte once."""
    source = torch.empty(megabytes * 2**20, dtype=torch.uint8)
    target = torch.empty_like(source)
    target.copy_(source)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        target.copy_(source)
        best = max(best, 2 * source.numel() / (time.perf_counter() - start))
    return best / 1e9


def naive(model, tokenizer, prompts: list, max_new_tokens: int) -> list[str]:
    answers = []
    with torch.inference_mode():
        for prompt in prompts:
            batch = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                    top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
            answers.append(tokenizer.decode(output[0, batch["input_ids"].shape[1]:], skip_special_tokens=True))
    return answers


def linear_params(model) -> tuple[int, int]:
    """Weights of the transformer blocks' linear layers, and of the LM head: what each token multiplies."""
    blocks = sum(m.weight.numel() for name, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and "lm_head" not in name)
    return blocks, model.get_output_embeddings().weight.numel()


def engine_flops(model, lengths: list[int], new_tokens: list[int], batch_size: int) -> tuple[float, float, int]:
    """FLOPs of the engine's prefill and decode, and its decode steps (forward passes of one batch), batched as
    `generate` batches (prompt `lengths` sorted longest first, padded to the longest in each batch; a batch decodes
    until its longest answer ends)."""
    blocks, head = linear_params(model)
    hidden, layers = model.config.hidden_size, model.config.num_hidden_layers
    prefill = decode = 0.0
    decode_steps = 0
    for offset in range(0, len(lengths), batch_size):
        rows, width = len(lengths[offset: offset + batch_size]), lengths[offset]
        steps = max(new_tokens[offset: offset + batch_size])
        decode_steps += steps
        # linear layers on every position, causal attention (QK^T and AV) on half the square, the head on the last
        prefill += rows * (2 * blocks * width + 2 * layers * width * width * hidden + 2 * head)
        decode += rows * steps * (2 * (blocks + head) + 4 * layers * (width + steps / 2) * hidden)
    return prefill, decode, decode_steps


def count_tokens(tokenizer, answers) -> int:
    return sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="prompts")
    args = parser.parse_args()
    config = quickstart()
    records = train_records(config, args.n)
    prompts = {r.id: prompt_messages(r) for r in records}
    batch_size, max_new_tokens = config.generate.batch_size, config.generate.max_new_tokens
    lm = TransformersLM(config.model, batch_size=batch_size)
    model, tokenizer = lm.model, lm.tokenizer  # the naive baseline runs the same weights without autocast

    compute = lm.placement.compute  # what the engine's matrix products run in on this machine
    peak_gflops, bandwidth = matmul_gflops(compute), copy_gb_per_s()
    # decode reads the weights as stored, at the compute precision's width when autocast converts them
    weight_bytes = sum(p.numel() for p in model.parameters()) * compute.itemsize

    start = time.perf_counter()
    naive_answers = naive(model, tokenizer, list(prompts.values()), max_new_tokens)
    naive_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as scratch:
        out = RecordFile(Path(scratch) / "generations.jsonl", "bench")
        start = time.perf_counter()
        generate_into(lm, prompts, out, max_new_tokens, "generate")
        engine_s = time.perf_counter() - start
        records_out = out.records
    engine_answers = [records_out[i]["response"] for i in prompts]

    # Prefill alone: the same length-sorted batches, one new token each.
    length = {i: len(tokenizer.apply_chat_template(p, add_generation_prompt=True, return_dict=False))
              for i, p in prompts.items()}
    order = sorted(prompts, key=lambda i: length[i], reverse=True)
    start = time.perf_counter()
    lm.generate([prompts[i] for i in order], 1)  # in the same batches: the engine sorts them the same way
    prefill_s = time.perf_counter() - start
    decode_s = engine_s - prefill_s
    # an answer that ended before the limit also generated its end-of-turn token
    new_tokens = [min(count_tokens(tokenizer, [records_out[i]["response"]]) + 1, max_new_tokens) for i in order]
    prefill_flops, decode_flops, decode_steps = engine_flops(model, [length[i] for i in order], new_tokens, batch_size)

    naive_tokens, engine_tokens = count_tokens(tokenizer, naive_answers), count_tokens(tokenizer, engine_answers)
    result = {
        "config": {"n": args.n, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                   "precision": list(lm.placement.precision)},
        "limits": {"compute_dtype": str(compute).removeprefix("torch."), "matmul_peak_gflops": peak_gflops,
                   "memory_gb_per_s": bandwidth, "weight_bytes": weight_bytes},
        "naive": {"seconds": naive_s, "examples_per_s": args.n / naive_s, "tokens_per_s": naive_tokens / naive_s,
                  "tokens": naive_tokens},
        "engine": {"seconds": engine_s, "examples_per_s": args.n / engine_s, "tokens_per_s": engine_tokens / engine_s,
                   "tokens": engine_tokens, "prefill_s": prefill_s, "decode_s": decode_s,
                   "prefill_gflops": prefill_flops / prefill_s / 1e9, "decode_gflops": decode_flops / decode_s / 1e9},
        "speedup": naive_s / engine_s,
        "same_answer_as_fp32": sum(a.strip() == b.strip() for a, b in zip(naive_answers, engine_answers)) / args.n,
    }
    engine = result["engine"]
    engine["prefill_fraction_of_peak"] = engine["prefill_gflops"] / peak_gflops
    engine["decode_fraction_of_peak"] = engine["decode_gflops"] / peak_gflops
    # decode's limit is whichever bound it meets first: the matmul rate, or reading the weights once per step
    engine["decode_weight_gb_per_s"] = decode_steps * weight_bytes / decode_s / 1e9
    engine["decode_fraction_of_bandwidth"] = engine["decode_weight_gb_per_s"] / bandwidth
    engine["decode_fraction_of_limit"] = max(engine["decode_fraction_of_peak"], engine["decode_fraction_of_bandwidth"])
    path = save("generate", result)
    dtype = result["limits"]["compute_dtype"]
    print(f"generate: {engine['examples_per_s']:.2f} vs {result['naive']['examples_per_s']:.2f} examples/s "
          f"({result['speedup']:.1f}x naive); {engine['tokens_per_s']:.0f} vs "
          f"{result['naive']['tokens_per_s']:.0f} tokens/s; prefill {engine['prefill_gflops']:.0f} GFLOP/s = "
          f"{engine['prefill_fraction_of_peak']:.0%} of the {dtype} matmul peak {peak_gflops:.0f} GFLOP/s; decode "
          f"{engine['decode_fraction_of_limit']:.0%} of its limit ({engine['decode_gflops']:.0f} GFLOP/s = "
          f"{engine['decode_fraction_of_peak']:.0%} of the peak; weights read at "
          f"{engine['decode_weight_gb_per_s']:.1f} GB/s = {engine['decode_fraction_of_bandwidth']:.0%} of the "
          f"{bandwidth:.1f} GB/s memory bandwidth) -> {path}")


if __name__ == "__main__":
    main()
