"""Shared fixtures: a tiny random Llama with a small byte-level BPE tokenizer, built here, never downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

RECORDS = [
    ("q1", "What colour is the sky?", "The sky is blue on a clear day.", "blue", True),
    ("q2", "Who wrote the letter?", "The letter was written by Anna in Paris.", "Anna", True),
    ("q3", "How many cats live here?", "Three cats live in the old house.", "Three", True),
    ("q4", "When did the ship sail?", "The bridge was built of stone.", "I cannot answer this question from the document.", False),
    ("q5", "Where is the river?", "Bread is baked every morning.", "I cannot answer this question from the document.", False),
    ("q6", "What does the baker make?", "Bread is baked every morning by the baker.", "Bread", True),
]


def record_dicts() -> list[dict]:
    return [
        {"id": i, "messages": [{"role": "user", "content": q}], "context": c, "response": r,
         "meta": {"answerable": a, "answers": [r] if a else []}}
        for i, q, c, r, a in RECORDS
    ]


CHATML_TOKENS = {"bos": "<|im_start|>", "eos": "<|im_end|>", "pad": "<|im_end|>"}


def build_tiny_model(folder: Path, vocab_size: int = 512, seed: int = 0, tie_word_embeddings: bool = True, *,
                     chat_template: str = CHATML, tokens: dict[str, str | None] = CHATML_TOKENS,
                     extra_special: tuple[str, ...] = ("<|im_start|>", "<|im_end|>")) -> Path:
    """A random 2-layer Llama and a byte-level BPE tokenizer trained on the test records, with `chat_template` and
    the model's own special tokens (`tokens`: bos, eos and pad, a name or None; `extra_special`: the template's
    markers, e.g. Gemma's <start_of_turn>), so that a real chat template renders and tokenizes as on its model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    named = {key: tokens.get(key) for key in ("bos", "eos", "pad")}
    named["pad"] = named["pad"] or named["eos"]
    special = list(dict.fromkeys(["<unk>", *[t for t in named.values() if t], *extra_special]))
    corpus = [f"{q} {c} {r} Document: Question: answer system user assistant" for _, q, c, r, _ in RECORDS]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token=named["bos"],
                                   eos_token=named["eos"], pad_token=named["pad"],
                                   additional_special_tokens=[t for t in special[1:] if t not in named.values()])
    fast.chat_template = chat_template
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, tie_word_embeddings=tie_word_embeddings)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def run_stage(config, stage, fresh: bool = False):
    """`stage`'s result in a run of its own, after the stages it needs; `fresh` redoes that stage (as `--fresh`
    does on the command line)."""
    from ssrtune.stages.base import Run

    return Run(config, {stage.key} if fresh else False)(stage)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def records_file(tmp_path) -> Path:
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in record_dicts()), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Tests never write to the user's cache, except the integration tests, which opt back in.
    monkeypatch.setenv("SSRTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _libraries_not_quieted(monkeypatch):
    # A command line run in a test's process quiets the libraries (console.quiet_libraries: the environment, their
    # loggers and progress bars; pytest restores warning filters itself): each test starts as a library user would.
    import logging

    import datasets
    import transformers

    from ssrtune.console import LIBRARIES

    monkeypatch.setenv("SSRTUNE_QUIET", "0")
    levels = {name: logging.getLogger(name).level for name in LIBRARIES}
    bars = transformers.utils.logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    transformers.utils.logging.enable_progress_bar() if bars[0] else transformers.utils.logging.disable_progress_bar()
    datasets.enable_progress_bars() if bars[1] else datasets.disable_progress_bars()


@pytest.fixture()
def fake_openai():
    """A fake OpenAI-compatible server on 127.0.0.1 (see tests/fake_openai.py), stopped at the test's end."""
    from tests.fake_openai import FakeOpenAI

    server = FakeOpenAI()
    yield server
    server.stop()
