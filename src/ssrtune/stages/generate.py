"""The base model's own greedy answer to every training prompt: generations.jsonl."""

from __future__ import annotations

import logging
from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.data.prompts import fitted_prompts, prompt_messages, prompt_part
from ssrtune.data.schema import Record
from ssrtune.inference.engine import ENGINES
from ssrtune.inference.factory import stage_engine_identity, stage_lm
from ssrtune.inference.generation import generate_into
from ssrtune.models.loading import context_length, load_tokenizer, model_part
from ssrtune.methods import OWN_ANSWERS, OwnAnswers, Source
from ssrtune.stages.base import Inputs, Stage
from ssrtune.stages.candidates import makes
from ssrtune.stages.data import Data
from ssrtune.storage.fingerprints import Digest, Parts, file_digest
from ssrtune.storage.artifacts import RecordFile, write_json
from ssrtune.storage.layout import RunLayout

log = logging.getLogger(__name__)


def generation_inputs(config: RunConfig) -> Parts:
    """What the base model's greedy answers depend on: the model, the prompts, the training data, the answer
    length, the engine and its precision (or the served model name)."""
    gen = config.generate
    return {"model": model_part(config.model), "prompt": prompt_part(config.model.max_context),
            "data/train.jsonl": Digest(file_digest(RunLayout(config.path).train_records)),
            "generate.max_new_tokens": gen.max_new_tokens, "generate.engine": stage_engine_identity(config, gen)}


def task_prompts(config: RunConfig, engine: str, stage: str, records: list[Record], reserve: int,
                 targets: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """The prompts for generating from `records`: cut by the one truncation rule to fit the model's context with
    `reserve` tokens to spare; whole for an engine that tokenizes them itself (a server, with its own limit)."""
    if ENGINES[engine].can.tokenizes_prompts or not records:
        return {r.id: prompt_messages(r) for r in records}
    return fitted_prompts(RunLayout(config.path).truncation, config.model.name, stage, records,
                          load_tokenizer(config.model), context_length(config.model), targets=targets, reserve=reserve)


def generate_answers(config: RunConfig, prompts: dict[str, list[dict]], out: RecordFile, description: str
                     ) -> dict[str, str]:
    """The base model's greedy answers (`generate` settings) to the prompts not yet in `out`; returns the prompts
    the engine could not answer (id -> what failed). The model is released when they are done."""
    if all(i in out for i in prompts):
        return {}
    with stage_lm(config, config.generate) as lm:
        return generate_into(lm, prompts, out, config.generate.max_new_tokens,
                             f"{description} ({config.generate.engine})")


@makes(OwnAnswers)
class Generate(Stage):
    """Inputs: `generation_inputs`. Artifact: generations.jsonl, records {id, response}. Resume: the
    prompts without a record are answered; other settings are refused (`--fresh` discards the answers).

    A prompt the engine could not answer (a server's request that failed for good) gets no generation (its example
    trains on gold); generations.failures.json lists them, and rerunning the stage retries exactly those.
    """

    name = "generate"
    kind = "records"
    source = OWN_ANSWERS

    @classmethod
    def for_source(cls, source: Source) -> Generate:
        return cls()

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        return {"data": Data()}

    def artifact(self, layout: RunLayout) -> Path:
        return layout.candidates(self.source.name)

    def parts(self, inputs: Inputs) -> Parts:
        return generation_inputs(inputs.config)

    def make(self, inputs: Inputs) -> dict[str, dict]:
        records, _ = inputs["data"]
        config, out = inputs.config, inputs.out
        failures: dict[str, str] = {}
        if len(out) < len(records):
            prompts = task_prompts(config, config.generate.engine, "generate", records,
                                   reserve=config.generate.max_new_tokens)
            failures = generate_answers(config, prompts, out, "generate train prompts")
        write_json(inputs.layout.generation_failures, {"n_failed": len(failures), "failures": failures})
        if failures:
            log.warning("%d of %d prompts got no answer from the engine (first: %s); their examples use the gold "
                        "answer, and rerunning retries them", len(failures), len(records),
                        next(iter(failures.values())))
        return out.records

    def describe(self, result: dict[str, dict]) -> str:
        return f"{len(result)} own answers"
