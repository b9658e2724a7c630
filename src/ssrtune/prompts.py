"""The prompts a run shows the model, cut to fit by the truncation rule of `data.fit_prompt`, and counted."""

from __future__ import annotations

import logging

from ssrtune import data as data_mod
from ssrtune.config import RunConfig
from ssrtune.data import Record, fit_prompt
from ssrtune.store import fingerprint, read_json, write_json

log = logging.getLogger(__name__)


def prompt_fingerprint(config: RunConfig) -> str:
    """What shapes the prompts besides the model's chat template: our system prompt and the context limit."""
    return fingerprint(data_mod.SYSTEM_PROMPT, config.model.max_context)


def fitted_prompts(config: RunConfig, stage: str, records: list[Record], tokenizer, max_tokens: int,
                   targets: dict[str, str] | None = None, reserve: int = 0) -> dict[str, list[dict]]:
    """Each record's prompt under the truncation rule of `data.fit_prompt`; cut documents are counted in
    truncation.json under `stage` and logged."""
    prompts, cut = {}, {}
    for record in records:
        prompts[record.id], n_cut = fit_prompt(record, tokenizer, max_tokens,
                                               None if targets is None else targets[record.id], reserve)
        if n_cut:
            cut[record.id] = n_cut
    if cut:
        log.warning("%s: %d of %d prompts had their document cut to fit %d tokens (%d tokens cut in all)",
                    stage, len(cut), len(records), max_tokens, sum(cut.values()))
    path = config.path / "truncation.json"
    summary = read_json(path) if path.exists() else {}
    summary[stage] = {"prompts": len(records), "truncated": len(cut), "tokens_cut": sum(cut.values()),
                      "max_tokens": max_tokens, "ids": sorted(cut)}
    write_json(path, summary)
    return prompts
