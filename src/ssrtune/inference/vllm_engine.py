"""The vllm engine: vLLM's offline `LLM` on GPUs, for generation and log-likelihoods (through prompt log-probs).

Prompts are rendered and tokenized here by the model's own tokenizer -- the same tokens the transformers engine
sees -- and sent as token ids. A trained LoRA adapter is evaluated without merging (`enable_lora` + `LoRARequest`);
fully fine-tuned weights are loaded as the model. The precision is what model.dtype decides for the GPUs, unless
`vllm.dtype` says otherwise. `engines.VllmEngine` runs it in a child process of its own (`child`), whose end
releases the GPU memory before the next stage (training) needs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ssrtune.extras import import_extra
from ssrtune.inference.generation import prompt_text
from ssrtune.inference.lm import LM, Prompt
from ssrtune.inference.scoring import encode_request
from ssrtune.models.loading import load_tokenizer, resolve
from ssrtune.models.placement import place
from ssrtune.config.fields import ModelConfig, VllmConfig

# The ranks vLLM's `max_lora_rank` takes (vLLM 0.30); an adapter needs one at least its own rank.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_dtype(model: ModelConfig, settings: VllmConfig) -> str:
    """The precision vLLM runs in: `vllm.dtype`, else model.dtype's decision for the visible GPUs."""
    if settings.dtype:
        return settings.dtype
    placement = place(model.model_copy(update={"device_map": "auto"}))  # every visible GPU
    # without a GPU vLLM will say it needs one; the setting is all there is to record
    return placement.precision[1] if placement.device_type == "cuda" else model.dtype


def lora_rank(adapter: Path) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds the adapter's rank (PEFT's `r`, or its rank_pattern)."""
    settings = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    rank = max([settings["r"], *(settings.get("rank_pattern") or {}).values()])
    fitting = [r for r in LORA_RANKS if r >= rank]
    if not fitting:
        raise ValueError(f"{adapter}: LoRA rank {rank} is above vLLM's largest max_lora_rank {LORA_RANKS[-1]}")
    return fitting[0]


class VllmLM(LM):
    """`model`, or with `adapter` a trained one, in a vLLM engine started at construction (in the child process)."""

    engine = "vllm"
    chunk_size = 1024  # vLLM schedules its own batches within a chunk; chunks only bound what a crash loses

    def __init__(self, model: ModelConfig, settings: VllmConfig, adapter: Path | None = None):
        vllm = import_extra("vllm", "vllm", "the vllm engine")
        self.tokenizer = load_tokenizer(model)
        self._sampling = vllm.SamplingParams
        base = resolve(model.name)
        lora = adapter is not None and (Path(adapter) / "adapter_config.json").exists()
        source = str(adapter) if adapter is not None and not lora else base
        optional = {"max_model_len": settings.max_model_len, "max_num_seqs": settings.max_num_seqs}
        self.llm = vllm.LLM(
            model=source, tokenizer=base, revision=model.revision if source == model.name else None,
            trust_remote_code=model.trust_remote_code, dtype=vllm_dtype(model, settings),
            tensor_parallel_size=settings.tensor_parallel_size, gpu_memory_utilization=settings.gpu_memory_utilization,
            enforce_eager=settings.enforce_eager, **{k: v for k, v in optional.items() if v is not None},
            **({"enable_lora": True, "max_loras": 1, "max_lora_rank": lora_rank(Path(adapter))} if lora else {}))
        self.lora = None
        if lora:
            request = import_extra("vllm.lora.request", "vllm", "the vllm engine")
            self.lora = request.LoRARequest(Path(adapter).name, 1, str(adapter))

    def close(self) -> None:
        self.llm = None

    def _run(self, token_ids: list[list[int]], params) -> list:
        return self.llm.generate([{"prompt_token_ids": ids} for ids in token_ids], params, use_tqdm=False,
                                 lora_request=self.lora)

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = (), *,
                 batch_size: int | None = None, description: str | None = None) -> list[str]:
        """One call: vLLM batches and schedules the prompts itself (`batch_size` and the bar are the transformers
        engine's)."""
        tokens = [self.tokenizer(prompt_text(self.tokenizer, p), add_special_tokens=False)["input_ids"]
                  for p in prompts]
        outputs = self._run(tokens, self._sampling(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop) or None))
        self.tokens_generated += sum(len(o.outputs[0].token_ids) for o in outputs)
        return [o.outputs[0].text for o in outputs]

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]], *, batch_size: int | None = None,
                      description: str | None = None) -> list[tuple[float, bool]]:
        """From the log-probabilities vLLM returns for the prompt's own tokens (`prompt_logprobs=1`: each position's
        actual token and the most likely one, with their ranks): greedy when every continuation token ranks first."""
        encoded = [encode_request(self.tokenizer, prompt_text(self.tokenizer, c), x) for c, x in requests]
        for index, (context, continuation) in enumerate(encoded):
            if not context or not continuation:
                raise ValueError(f"request {index}: an empty context or continuation can't be scored")
        outputs = self._run([c + x for c, x in encoded],
                            self._sampling(temperature=0.0, max_tokens=1, prompt_logprobs=1))
        results = []
        for (context, continuation), output in zip(encoded, outputs):
            positions = output.prompt_logprobs[len(context):]
            scored = [position[token] for position, token in zip(positions, continuation)]
            results.append((sum(s.logprob for s in scored), all(s.rank == 1 for s in scored)))
        return results
