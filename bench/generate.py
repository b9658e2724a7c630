"""Generation throughput: ssrtune's engine against naive transformers generation, and against this CPU's limit.

The same prompts (the quickstart's first training prompts) and greedy settings on both sides. The naive
baseline is `model.generate` in fp32, one prompt at a time, in data order; the engine is
`ssrtune.inference.local.TransformersLM` (length-sorted batches, bf16 where the CPU runs it natively). The same run measures
the CPU's bf16 matrix-multiply rate and expresses the engine's prefill and decode as a fraction of it.

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
from ssrtune.store import RecordFile


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


def engine_flops(model, lengths: list[int], new_tokens: list[int], batch_size: int) -> tuple[float, float]:
    """FLOPs of the engine's prefill and decode, batched as `generate` batches (prompt `lengths` sorted longest
    first, padded to the longest in each batch; a batch decodes until its longest answer ends)."""
    blocks, head = linear_params(model)
    hidden, layers = model.config.hidden_size, model.config.num_hidden_layers
    prefill = decode = 0.0
    for offset in range(0, len(lengths), batch_size):
        rows, width = len(lengths[offset: offset + batch_size]), lengths[offset]
        steps = max(new_tokens[offset: offset + batch_size])
        # linear layers on every position, causal attention (QK^T and AV) on half the square, the head on the last
        prefill += rows * (2 * blocks * width + 2 * layers * width * width * hidden + 2 * head)
        decode += rows * steps * (2 * (blocks + head) + 4 * layers * (width + steps / 2) * hidden)
    return prefill, decode


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

    peak = {"bf16": matmul_gflops(torch.bfloat16), "fp32": matmul_gflops(torch.float32)}

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
    prefill_flops, decode_flops = engine_flops(model, [length[i] for i in order], new_tokens, batch_size)

    naive_tokens, engine_tokens = count_tokens(tokenizer, naive_answers), count_tokens(tokenizer, engine_answers)
    result = {
        "config": {"n": args.n, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                   "precision": list(lm.placement.precision)},
        "matmul_peak_gflops": peak,
        "naive": {"seconds": naive_s, "examples_per_s": args.n / naive_s, "tokens_per_s": naive_tokens / naive_s,
                  "tokens": naive_tokens},
        "engine": {"seconds": engine_s, "examples_per_s": args.n / engine_s, "tokens_per_s": engine_tokens / engine_s,
                   "tokens": engine_tokens, "prefill_s": prefill_s, "decode_s": decode_s,
                   "prefill_gflops": prefill_flops / prefill_s / 1e9, "decode_gflops": decode_flops / decode_s / 1e9},
        "speedup": naive_s / engine_s,
        "same_answer_as_fp32": sum(a.strip() == b.strip() for a, b in zip(naive_answers, engine_answers)) / args.n,
    }
    engine = result["engine"]
    engine["prefill_fraction_of_peak"] = engine["prefill_gflops"] / peak["bf16"]
    engine["decode_fraction_of_peak"] = engine["decode_gflops"] / peak["bf16"]
    path = save("generate", result)
    print(f"generate: {engine['examples_per_s']:.2f} vs {result['naive']['examples_per_s']:.2f} examples/s "
          f"({result['speedup']:.1f}x naive, target 8x); {engine['tokens_per_s']:.0f} vs "
          f"{result['naive']['tokens_per_s']:.0f} tokens/s; prefill {engine['prefill_gflops']:.0f} GFLOP/s = "
          f"{engine['prefill_fraction_of_peak']:.0%} and decode {engine['decode_gflops']:.0f} GFLOP/s = "
          f"{engine['decode_fraction_of_peak']:.0%} of the bf16 matmul peak {peak['bf16']:.0f} GFLOP/s -> {path}")


if __name__ == "__main__":
    main()
