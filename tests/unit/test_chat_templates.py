"""Real chat templates (tests/data/chat_templates; sources.json says where each text comes from) through every place a
prompt is made: generation's prompt, training's loss mask (the answer and the end of its turn, counted) and
evaluation (answers, scores, the KL path), each on a tiny random model whose tokenizer has the model's own special
tokens and the template attached. A template without a system role gets the system text in the first user turn."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from ssrtune.evaluation import retention
from ssrtune.config.run import ModelConfig, TrainConfig
from ssrtune.data.chat_format import ChatTemplateError, check_chat_template, end_of_turn_ids, has_system_role
from ssrtune.data.prompts import fit_prompt
from ssrtune.data.schema import Record
from ssrtune.inference.generation import complete_batch, prompt_text
from ssrtune.inference.local import TransformersLM
from ssrtune.models.loading import load_model, load_tokenizer
from ssrtune.models.placement import Placement
from ssrtune.training.trainer import build_trainer
from tests.tiny_run import build_tiny_model
from tests.paths import TESTS

TEMPLATES = TESTS / "data" / "chat_templates"
SOURCES = json.loads((TEMPLATES / "sources.json").read_text(encoding="utf-8"))["templates"]
# Templates that raise on a system turn, drop it, or print it only when the user's turn is the last one.
FOLDED = {"mistral-7b-instruct-v0.1", "mistral-7b-instruct-v0.2", "mistral-7b-instruct-v0.3-tools", "mistral-v3",
          "gemma-2-2b-it", "phi-3-medium-4k-instruct"}
# The token that ends the assistant's turn where it is not the tokenizer's eos.
TURN_END = {"llama-3-8b-instruct": "<|eot_id|>", "gemma-2-2b-it": "<end_of_turn>", "gemma-3-it": "<end_of_turn>",
            "phi-3-mini-4k-instruct": "<|end|>", "phi-3-medium-4k-instruct": "<|end|>",
            "phi-3.5-mini-instruct": "<|end|>", "phi-4-mini-instruct": "<|end|>"}
SYSTEM = "Answer with a few words from the document."
CPU = Placement("cpu", "cpu", torch.float32, torch.float32)


def records() -> list[Record]:
    system = {"role": "system", "content": SYSTEM}
    return [Record.model_validate(r) for r in [
        {"id": "one", "messages": [system, {"role": "user", "content": "What colour is the sky?"}],
         "context": "The sky is blue on a clear day.", "response": "blue"},
        {"id": "turns", "messages": [system, {"role": "user", "content": "Who wrote the letter?"},
                                     {"role": "assistant", "content": "Anna"},
                                     {"role": "user", "content": "Where did she write it?"}],
         "context": "The letter was written by Anna in Paris.", "response": "in Paris"},
        {"id": "none", "messages": [{"role": "user", "content": "When did the ship sail?"}],
         "context": "The bridge was built of stone.", "response": "I cannot answer this question from the document."},
    ]]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    def build(name: str) -> Path:
        source = SOURCES[name]
        return build_tiny_model(tmp_path_factory.mktemp(name), chat_template=(TEMPLATES / f"{name}.jinja").read_text(),
                                tokens=source["tokens"], extra_special=tuple(source["special_tokens"]))
    return build


def test_every_template_file_has_its_source():
    assert sorted(p.stem for p in TEMPLATES.glob("*.jinja")) == sorted(SOURCES) and len(SOURCES) == 18
    for source in SOURCES.values():
        assert source["hub_repo"].count("/") == 1 and source["copied_from"]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_a_real_template_through_generation_training_and_evaluation(name, model_folder, tmp_path):
    config = ModelConfig(name=str(model_folder(name)), dtype="float32")
    tokenizer, model = load_tokenizer(config), load_model(config)
    assert has_system_role(tokenizer) == (name not in FOLDED)
    check_chat_template(tokenizer, config.name)  # what a run checks before anything runs

    # generation's prompt: the system text once, before the question; the document; nothing cut
    prompts = {}
    for record in records():
        prompts[record.id], cut = fit_prompt(record, tokenizer, 1024, reserve=8)
        text = prompt_text(tokenizer, prompts[record.id])
        assert cut == 0 and record.context in text and record.query in text
        if record.messages[0].role == "system":
            assert text.count(SYSTEM) == 1 and text.index(SYSTEM) < text.index(record.query)
    assert tokenizer.convert_tokens_to_ids(TURN_END.get(name, tokenizer.eos_token)) in end_of_turn_ids(tokenizer)

    # training's mask: the labels are the answer and the end of its turn as the template writes them, counted
    rows = []
    for record in records():
        messages, _ = fit_prompt(record, tokenizer, 1024, completion=record.response)
        rows.append({"id": record.id, "messages": messages, "target": record.response})
    trainer = build_trainer(model, tokenizer, rows, TrainConfig(batch_size=3, epochs=1), tmp_path / "out",
                            placement=CPU)
    trained = {example["id"]: example for example in trainer.train_dataset}
    for row, record in zip(rows, records()):
        alone = tokenizer.apply_chat_template(row["messages"], tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template(row["messages"] + [{"role": "assistant", "content": row["target"]}],
                                              tokenize=False)
        assert whole.startswith(alone)
        answer_and_end = whole[len(alone):]
        assert row["target"] in answer_and_end and record.query not in answer_and_end
        labelled = [t for t in trained[row["id"]]["labels"] if t != -100]
        assert len(labelled) == len(tokenizer(answer_and_end, add_special_tokens=False)["input_ids"])
        assert tokenizer.decode(labelled) == answer_and_end

    # evaluation: answers to the same prompts, scores of the gold answers, the KL path's chat prompts
    lm = TransformersLM(config, batch_size=3, loaded=(trainer.model.merge_and_unload().eval(), tokenizer))
    answers = lm.generate(list(prompts.values()), 3)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    scores = lm.loglikelihood([(prompts[r.id], r.response) for r in records()])
    assert len(scores) == 3 and all(-1e4 < ll < 0 for ll, _ in scores)
    reference = retention.kl_reference(lm, ["Write a short poem about the sea."], 3, 8, 1)
    assert int(reference["n_scored"][0]) > 0  # the KL covers response tokens after the template's prompt
    assert retention.kl_from_reference(lm, reference, 1)["mean_kl"] == pytest.approx(0.0, abs=1e-5)


def test_a_template_that_prints_the_system_text_in_one_rendering_only_is_refused_unless_folded(
        model_folder, monkeypatch, caplog):
    """Mistral's v3 template prints the system text only when the user's turn is last: without folding, the prompt
    is not a prefix of prompt + answer, and the run stops naming the model and the template (TRL would put the loss
    on the document and the question)."""
    from ssrtune.data import chat_format

    tokenizer = load_tokenizer(ModelConfig(name=str(model_folder("mistral-v3"))))
    record = records()[0]
    with caplog.at_level(logging.WARNING, logger="ssrtune.data.chat_format"):
        fit_prompt(record, tokenizer, 1024, completion="blue", model="mistralai/Mistral-7B-Instruct-v0.3")
        fit_prompt(record, tokenizer, 1024, completion="blue", model="mistralai/Mistral-7B-Instruct-v0.3")
    folded = [r for r in caplog.records if "has no system role" in r.getMessage()]
    assert len(folded) == 1 and "Mistral-7B-Instruct-v0.3" in folded[0].getMessage()  # said once
    monkeypatch.setattr(chat_format, "has_system_role", lambda tokenizer: True)  # as before: no folding
    with pytest.raises(ChatTemplateError, match=r"record 'one': model 'mistralai/Mistral-7B-Instruct-v0.3' \(chat "
                                                r"template sha256 \w+\.\.\.\) renders the prompt alone differently"):
        fit_prompt(record, tokenizer, 1024, completion="blue", model="mistralai/Mistral-7B-Instruct-v0.3")


def test_generation_stops_at_the_end_of_the_turn_the_template_writes(model_folder):
    """Gemma ends a turn with <end_of_turn>, not its eos: a model that says <end_of_turn> has finished."""
    folder = model_folder("gemma-2-2b-it")
    tokenizer, model = load_tokenizer(ModelConfig(name=str(folder))), load_model(ModelConfig(name=str(folder)))
    end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.copy_(torch.nn.functional.one_hot(torch.tensor(end), model.config.vocab_size).float())
    model.lm_head = head  # always says <end_of_turn>
    text = prompt_text(tokenizer, [{"role": "user", "content": "What colour is the sky?"}])
    answers, n_tokens = complete_batch(model, tokenizer, [text], 6, CPU)
    assert answers == [""] and n_tokens == 1
