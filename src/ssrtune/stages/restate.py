"""The base model's restatements of gold answers (s3ft's paraphrases, sdft's rewrites): a candidate source."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.methods import Restatement, Source
from ssrtune.prompt_templates import render
from ssrtune.stages.base import Inputs, Stage
from ssrtune.stages.candidates import candidate_stage, makes
from ssrtune.stages.data import Data
from ssrtune.stages.generate import generate_answers, generation_inputs, task_prompts
from ssrtune.stages.judge import Judge
from ssrtune.storage.fingerprints import Digest, Parts, parts_hash
from ssrtune.storage.layout import RunLayout

log = logging.getLogger(__name__)

# Tokens kept free for a restating template's own wording, beside the task prompt, the gold answer and the reply.
TEMPLATE_RESERVE = 128


@makes(Restatement)
@dataclass(frozen=True, eq=False)
class Restate(Stage):
    """Inputs: the generation's (`generation_inputs`) and the template's text. Artifact: <name>.jsonl, records
    {id, response}; the judge stage judges them like the own answers (<name>.judgments.jsonl). Resume: like the
    own answers; a changed template is refused (`--fresh` restates again)."""

    restatement: Restatement
    name = "restate"
    kind = "records"

    @classmethod
    def for_source(cls, source: Source) -> Restate:
        return cls(source)

    @property
    def source(self) -> Restatement:
        return self.restatement

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        after = self.restatement.after
        earlier = {"earlier answers": candidate_stage(after), "earlier verdicts": Judge(candidate_stage(after))
                   } if after else {}
        return {"data": Data(), **earlier}

    def artifact(self, layout: RunLayout) -> Path:
        return layout.candidates(self.restatement.name)

    def parts(self, inputs: Inputs) -> Parts:
        generation = generation_inputs(inputs.config)
        return {"generation": Digest(parts_hash(generation), generation),
                f"generate.{self.restatement.config_key}": self.restatement.template_text(inputs.config.generate)}

    def make(self, inputs: Inputs) -> dict[str, dict]:
        config, restatement, out = inputs.config, self.restatement, inputs.out
        records, _ = inputs["data"]
        earlier = (inputs["earlier answers"], inputs["earlier verdicts"]) if restatement.after else ({}, {})
        todo = [r for r in restatement.wanted(records, earlier) if r.id not in out]
        # the task prompt, its document cut by the one truncation rule so that the whole request fits
        instructions = task_prompts(config, config.generate.engine, restatement.name, todo,
                                    targets={r.id: r.response for r in todo},
                                    reserve=config.generate.max_new_tokens + TEMPLATE_RESERVE)
        template = restatement.template_text(config.generate)
        prompts = {r.id: [{"role": "user", "content": render(
            template, instruction="\n\n".join(m["content"] for m in instructions[r.id]), query=r.query,
            context=r.context or "", gold=r.response)}] for r in todo}
        failures = generate_answers(config, prompts, out, f"restate: {restatement.name}")
        if failures:
            log.warning("%s: %d prompts got no answer from the endpoint; their examples use gold",
                        restatement.name, len(failures))
        return out.records

    def describe(self, result: dict[str, dict]) -> str:
        return f"{len(result)} {self.restatement.name}"
