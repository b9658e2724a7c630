"""A method's training set: train/<method>.jsonl (dropped examples included, with no target) and the share of
each target source in train/<method>.stats.json."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.data.prompts import fitted_prompts, prompt_format
from ssrtune.judges.base import verdict_counts
from ssrtune.methods import Method, source_shares, trained_rows
from ssrtune.models.loading import context_length, load_tokenizer
from ssrtune.stages.base import Run, Stage
from ssrtune.stages.data import Data
from ssrtune.stages.generate import Generate
from ssrtune.stages.judge import Judge
from ssrtune.stages.restate import Restate
from ssrtune.storage.artifacts import write_json, write_jsonl

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Select(Stage):
    """Inputs: none; remade every time from the artifacts it needs (cheap and deterministic), so that the
    trained model's fingerprint is that of exactly what it trains on. Every example's prompt must be a prefix of its
    prompt and target in the model's tokens (`chat_format.prompt_and_answer_ids`), else the run stops here, before
    training; train/<method>.stats.json records the prompt format (`prompt_format`)."""

    method: Method
    name = "select"

    def needs(self, config: RunConfig) -> list[Stage]:
        restatement = self.method.restatement
        return [Data(), *([Generate(), Judge()] if self.method.own_answers else []),
                *([Restate(restatement)] if restatement else [])]

    def artifact(self, config: RunConfig) -> Path:
        return config.path / "train" / f"{self.method.name}.jsonl"

    def inputs(self, run: Run) -> None:
        return None

    def make(self, run: Run) -> list[dict]:
        method, config = self.method, run.config
        records, _ = run(Data())
        generations, judgments = (run(Generate()), run(Judge())) if method.own_answers else ({}, {})
        restated, restated_judgments = run(Restate(method.restatement)) if method.restatement else ({}, {})
        rows = method.select(records, generations, judgments, restated, restated_judgments)
        # The prompts are cut here, where the targets are known, so the rows are exactly what is trained on.
        by_id = {r.id: r for r in records}
        kept = trained_rows(rows)
        limit = min(config.train.max_length, context_length(config.model))
        tokenizer = load_tokenizer(config.model)
        trained = [by_id[row["id"]] for row in kept]
        prompts = fitted_prompts(config.path / "truncation.json", config.model.name, f"train/{method.name}", trained,
                                 tokenizer, limit, targets={row["id"]: row["target"] for row in kept})
        for row in kept:
            row["messages"] = prompts[row["id"]]
        if (method.own_answers or method.restatement) and kept and all(row["source"] == "gold" for row in kept):
            log.warning("select/%s: the judge accepted no candidate answer, so %s trains on the gold answers "
                        "only, exactly as sft would; check the judge on a few answers (`ssrtune judge-audit`)",
                        method.name, method.name)
        path = self.artifact(config)
        write_jsonl(path, rows)
        write_json(path.with_suffix(".stats.json"), {
            "method": method.name, "n": len(rows), "shares": source_shares(rows),
            "judge": verdict_counts(judgments) if method.own_answers else None,
            "judge_restated": verdict_counts(restated_judgments) if restated_judgments else None,
            "prompt": prompt_format(trained, tokenizer)})
        return rows

    def describe(self, result: list[dict]) -> str:
        """`200 examples, 22.0% self targets (gold 78.0%, self 22.0%)`."""
        shares = source_shares(result)
        others = ", ".join(f"{source} {share:.1%}" for source, share in shares.items())
        return f"{len(result)} examples, {shares.get('self', 0.0):.1%} self targets ({others})"
