"""The tiny run every end-to-end test starts from: a random 2-layer Llama with a small byte-level BPE tokenizer, built
here, never downloaded; six grounded-QA records; and the run configuration on them (`TinyRun`), to which each test
adds its own settings at its call site."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

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


def write_records(path: Path, rows: list[dict] | None = None) -> Path:
    """`rows` (the six test records by default) as a JSONL file at `path`."""
    path.write_text("".join(json.dumps(r) + "\n" for r in (record_dicts() if rows is None else rows)),
                    encoding="utf-8")
    return path


def many_records(path: Path, copies: int = 6) -> Path:
    """`copies` times the six test records, each copy under ids of its own (36 records by default)."""
    return write_records(path, [{**r, "id": f"{r['id']}-{k}"} for k in range(copies) for r in record_dicts()])


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


@dataclass(frozen=True)
class TinyRun:
    """A run of `model` on `records` (train data, and test data unless `test_records` are given) in `folder`/run, in
    float32 (the same numbers on every CPU). The settings each test adds are its own, given at its call site: `config("train.epochs=1")` as on
    the command line, or whole sections (`config(generate={"max_new_tokens": 4})`, `file(name="tiny", methods=["sft"])`)."""

    folder: Path
    model: Path
    records: Path
    test_records: Path | None = None

    @property
    def path(self) -> Path:
        return self.folder / "run"

    def settings(self) -> dict[str, Any]:
        """The tiny run's own settings, by dotted key."""
        return {"run_dir": str(self.path), "model.name": str(self.model), "model.dtype": "float32",
                "data.recipe": None, "data.train_file": str(self.records),
                "data.test_file": str(self.test_records or self.records)}

    def tree(self, **sections: Any) -> dict[str, Any]:
        """The settings as a configuration file holds them, `sections` added (a section given replaces the tiny
        run's own)."""
        tree: dict[str, Any] = {}
        for key, value in self.settings().items():
            section, _, name = key.rpartition(".")
            (tree.setdefault(section, {}) if section else tree)[name] = value
        return {**tree, **sections}

    def config(self, *overrides: str, **sections: Any):
        """The run's `RunConfig`, with `sections` and then `overrides` (`key=value`, as on the command line)."""
        from ssrtune.config.run import load_config

        tree = [f"{key}={json.dumps(value)}" for key, value in self.tree(**sections).items()]  # JSON is YAML
        return load_config(None, [*tree, *overrides])

    def file(self, filename: str = "config.yaml", **sections: Any) -> Path:
        """The configuration written to `folder`/`filename`, as a user writes one for the command line."""
        path = self.folder / filename
        path.write_text(yaml.safe_dump(self.tree(**sections)), encoding="utf-8")
        return path


# A whole `ssrtune run` of the tiny run in seconds: short answers, one epoch (as sections of a configuration file).
QUICK_RUN = {"name": "tiny", "generate": {"batch_size": 4, "max_new_tokens": 6}, "train": {"epochs": 1, "batch_size": 3},
             "evaluate": {"batch_size": 4, "max_new_tokens": 6}}
# Short own answers, four a batch (as overrides).
SHORT_ANSWERS = ("generate.batch_size=4", "generate.max_new_tokens=5")


def run_stage(config, stage, fresh: bool = False):
    """`stage`'s result in a run of its own, after the stages it needs; `fresh` redoes that stage (as `--fresh`
    does on the command line)."""
    from ssrtune.stages.base import Run

    return Run(config, {stage.key} if fresh else False)(stage)


def stamps(run: Path, *paths: str) -> dict[str, int]:
    """When each file of a run directory was last written: a file a stage did not redo keeps its stamp."""
    return {path: (run / path).stat().st_mtime_ns for path in paths}
