"""A method's training set: train/<method>.jsonl (dropped examples included, with no target) and the share of
each target source in train/<method>.stats.json."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.data.prompts import fitted_prompts, prompt_format
from ssrtune.judges.base import verdict_counts
from ssrtune.methods import OWN_ANSWERS, Method, accepted_answers, source_shares, trained_rows
from ssrtune.models.loading import context_length, load_tokenizer
from ssrtune.stages.base import Inputs, Stage
from ssrtune.stages.candidates import candidate_stage
from ssrtune.stages.data import Data
from ssrtune.stages import generate, restate  # noqa: F401  (their stages make the candidate sources)
from ssrtune.stages.judge import Judge
from ssrtune.storage.artifacts import write_json, write_jsonl
from ssrtune.storage.layout import RunLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Select(Stage):
    """Remade every time from the stages it needs (cheap and deterministic), so that the trained model's
    fingerprint is that of exactly what it trains on: the task data, and each of the method's candidate sources
    with the judge's verdicts on it. Every example's prompt must be a prefix of its prompt and target in the
    model's tokens (`chat_format.prompt_and_answer_ids`), else the run stops here, before training;
    train/<method>.stats.json records the prompt format (`prompt_format`)."""

    method: Method
    name = "select"

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        sources = {}
        for source in self.method.candidates:
            sources[f"{source.name} answers"] = candidate_stage(source)
            sources[f"{source.name} verdicts"] = Judge(candidate_stage(source))
        return {"data": Data(), **sources}

    def artifact(self, layout: RunLayout) -> Path:
        return layout.targets(self.method.name)

    def make(self, inputs: Inputs) -> list[dict]:
        method, config = self.method, inputs.config
        records, _ = inputs["data"]
        candidates = {s: (inputs[f"{s.name} answers"], inputs[f"{s.name} verdicts"]) for s in method.candidates}
        rows = method.select(records, candidates)
        # The prompts are cut here, where the targets are known, so the rows are exactly what is trained on.
        by_id = {r.id: r for r in records}
        kept = trained_rows(rows)
        limit = min(config.train.max_length, context_length(config.model))
        tokenizer = load_tokenizer(config.model)
        trained = [by_id[row["id"]] for row in kept]
        prompts = fitted_prompts(inputs.layout.truncation, config.model.name, f"train/{method.name}", trained,
                                 tokenizer, limit, targets={row["id"]: row["target"] for row in kept})
        for row in kept:
            row["messages"] = prompts[row["id"]]
        if method.candidates and kept and not any(accepted_answers(*pair) for pair in candidates.values()):
            log.warning("select/%s: the judge accepted no candidate answer, so %s trains on the gold answers "
                        "only, exactly as sft would; check the judge on a few answers (`ssrtune judge-audit`)",
                        method.name, method.name)
        path = self.artifact(inputs.layout)
        write_jsonl(path, rows)
        write_json(inputs.layout.target_stats(method.name), {
            "method": method.name, "n": len(rows), "shares": source_shares(rows),
            # the verdicts on the own answers, and on the restated answers, as earlier versions recorded them
            "judge": verdict_counts(candidates[OWN_ANSWERS][1]) if OWN_ANSWERS in candidates else None,
            "judge_restated": next((verdict_counts(v) for s, (_, v) in candidates.items()
                                    if s != OWN_ANSWERS and v), None),
            "prompt": prompt_format(trained, tokenizer)})
        return rows

    def describe(self, result: list[dict]) -> str:
        """`200 examples, 22.0% self targets (gold 78.0%, self 22.0%)`."""
        shares = source_shares(result)
        others = ", ".join(f"{source} {share:.1%}" for source, share in shares.items())
        return f"{len(result)} examples, {shares.get('self', 0.0):.1%} self targets ({others})"
