"""The base model's restatements of gold answers (s3ft's paraphrases, sdft's rewrites) and the judge's verdicts
on them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.methods import Restatement
from ssrtune.prompt_templates import render
from ssrtune.stages.base import Run, Stage
from ssrtune.stages.data import Data
from ssrtune.stages.generate import generate_answers, generation_inputs, task_prompts
from ssrtune.stages.judge import Judge, described_verdicts, judge_candidates
from ssrtune.storage.fingerprints import Digest, Parts, parts_hash
from ssrtune.storage.artifacts import RecordFile

log = logging.getLogger(__name__)

# Tokens kept free for a restating template's own wording, beside the task prompt, the gold answer and the reply.
TEMPLATE_RESERVE = 128


@dataclass(frozen=True, eq=False)
class Restate(Stage):
    """Inputs: the generation's (`generation_inputs`) and the template's text. Artifacts: <name>.jsonl (records
    {id, response}) and <name>.judgments.jsonl (the run's judge on them). Resume: like the own answers and
    their verdicts; a changed template is refused (`--fresh` restates again)."""

    restatement: Restatement
    name = "restate"

    def needs(self, config: RunConfig) -> list[Stage]:
        return [Data(), *([Judge()] if self.restatement.only_rejected else [])]

    def artifact(self, config: RunConfig) -> Path:
        return config.path / f"{self.restatement.name}.jsonl"

    def inputs(self, run: Run) -> Parts:
        generation = generation_inputs(run.config)
        return {"generation": Digest(parts_hash(generation), generation),
                f"generate.{self.restatement.config_key}": self.restatement.template_text(run.config.generate)}

    def make(self, run: Run) -> tuple[dict[str, dict], dict[str, dict]]:
        config, restatement, path = run.config, self.restatement, self.artifact(run.config)
        records, _ = run(Data())
        wanted = restatement.wanted(records, run(Judge()) if restatement.only_rejected else {})
        out = RecordFile(path, self.inputs(run), run.rule(self))
        todo = [r for r in wanted if r.id not in out]
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
        verdicts = judge_candidates(run, config.judge, path, path.with_name(f"{restatement.name}.judgments.jsonl"),
                                    run.rule(self))
        return out.records, verdicts

    def describe(self, result: tuple[dict[str, dict], dict[str, dict]]) -> str:
        return f"{len(result[0])} {self.restatement.name}, {described_verdicts(result[1])}"
