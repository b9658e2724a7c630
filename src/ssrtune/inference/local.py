"""The transformers engine: the model in this process, on the CPU, one GPU, or sharded over several (`device_map`),
placed and in the precision `ssrtune.models.placement.place` decides.

Generation answers length-sorted, left-padded batches; scoring runs each distinct input once and asks the model for
logits at the scored positions only (`scoring`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ssrtune.extras import import_extra
from ssrtune.inference import scoring
from ssrtune.inference.generation import complete_batch, prompt_text
from ssrtune.inference.lm import LM, Prompt
from ssrtune.models.loading import load_model, load_tokenizer
from ssrtune.models.placement import place
from ssrtune.progress import progress_bar
from ssrtune.config.fields import ModelConfig


class TransformersLM(LM):
    """`model` (with a trained `adapter`: a LoRA adapter merged in, or full weights), loaded on first use.
    `loaded` hands over a model and tokenizer already in memory (tests, benchmarks)."""

    engine = "transformers"

    def __init__(self, model: ModelConfig, adapter: Path | None = None, batch_size: int = 16, *,
                 loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None):
        self.config, self.adapter, self.batch_size = model, adapter, batch_size
        self.chunk_size = batch_size
        self.placement = place(model)
        self._model, self._tokenizer = loaded or (None, None)

    @property
    def model(self) -> PreTrainedModel:
        if self._model is None:
            self._model = load_model(self.config, self.adapter, device=self.placement.device_map,
                                     dtype=self.placement.dtype)
        return self._model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.config)
        return self._tokenizer

    def close(self) -> None:
        on_gpu = self._model is not None and self.placement.device_type == "cuda"
        self._model = None
        if on_gpu:
            torch.cuda.empty_cache()  # the next stage (training) gets the memory back

    def order(self, prompts: Sequence[Prompt]) -> list[int]:
        """Longest first, so that a batch holds prompts of similar length and little padding."""
        lengths = [len(self.tokenizer(prompt_text(self.tokenizer, p), add_special_tokens=False)["input_ids"])
                   for p in prompts]
        return sorted(range(len(prompts)), key=lambda k: -lengths[k])

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = (), *,
                 batch_size: int | None = None, description: str | None = None) -> list[str]:
        batch_size = batch_size or self.batch_size
        order = self.order(prompts)
        answers: list[str] = [""] * len(prompts)
        # No bar without a description: the resumable loop around this call has its own.
        with progress_bar(description) if description else contextlib.nullcontext() as bar:
            task = bar.add_task(description, total=len(prompts), rate="") if bar else None
            for start in range(0, len(order), batch_size):
                rows = order[start: start + batch_size]
                texts = [prompt_text(self.tokenizer, prompts[k]) for k in rows]
                batch, n_tokens = complete_batch(self.model, self.tokenizer, texts, max_new_tokens, self.placement,
                                                 list(stop) or None)
                self.tokens_generated += n_tokens
                for k, answer in zip(rows, batch):
                    answers[k] = answer
                if bar:
                    bar.update(task, advance=len(rows))
        return answers

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]], *, batch_size: int | None = None,
                      description: str | None = None) -> list[tuple[float, bool]]:
        encoded = [scoring.encode_request(self.tokenizer, prompt_text(self.tokenizer, context), continuation)
                   for context, continuation in requests]
        return scoring.loglikelihoods(self.model, encoded, batch_size or self.batch_size, self.placement, description)

    def token_logprobs(self, sequences: Sequence[list[int]], n_last: Sequence[int], *, batch_size: int | None = None,
                       description: str | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        return scoring.token_logprobs(self.model, list(sequences), list(n_last), batch_size or self.batch_size,
                                      self.placement, description)

    def answer_tokens(self, prompt: Prompt, answer: str) -> tuple[list[int], list[int]]:
        prompt_ids = self.tokenizer(prompt_text(self.tokenizer, prompt), add_special_tokens=False)["input_ids"]
        answer_ids = self.tokenizer(answer + (self.tokenizer.eos_token or ""), add_special_tokens=False)["input_ids"]
        return prompt_ids, answer_ids

    def harness_model(self, batch_size: int):
        """lm-evaluation-harness's own wrapper of a transformers model, around this one (loaded and placed here)."""
        huggingface = import_extra("lm_eval.models.huggingface", "lm-eval", "evaluate.retention.harness=lm-eval")
        return huggingface.HFLM(pretrained=self.model, tokenizer=self.tokenizer, batch_size=batch_size)
