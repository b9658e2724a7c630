"""From a judge's settings to the judge, and the fingerprint of everything its verdicts depend on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ssrtune.judges import rules
from ssrtune.judges.base import Judge
from ssrtune.config.judges import (CombinedJudgeConfig, ContainsJudgeConfig, EndpointLLMJudgeConfig,
                                   ExactJudgeConfig, JudgeConfig, LLMJudgeConfig,
                                   NumericJudgeConfig, RefusalJudgeConfig, RegexJudgeConfig, TokenScoreJudgeConfig,
                                   parse_judge)
from ssrtune.prompt_templates import JUDGE_TEMPLATE, template_text
from ssrtune.storage.fingerprints import Digest, fingerprint
from ssrtune.text import REFUSAL_PATTERNS

RULES = {RefusalJudgeConfig: lambda _: rules.RefusalJudge(), ContainsJudgeConfig: rules.ContainsJudge,
         ExactJudgeConfig: rules.ExactJudge, TokenScoreJudgeConfig: rules.TokenScoreJudge,
         NumericJudgeConfig: rules.NumericJudge, RegexJudgeConfig: rules.RegexJudge}


def build_judge(config: JudgeConfig) -> Judge:
    if isinstance(config, CombinedJudgeConfig):
        return rules.CombinedJudge(config.kind, [build_judge(child) for child in config.judges])
    if isinstance(config, LLMJudgeConfig):  # imported here: the rules need neither torch nor a server client
        from ssrtune.judges.llm import EndpointLLMJudge, LocalLLMJudge

        return EndpointLLMJudge(config) if isinstance(config, EndpointLLMJudgeConfig) else LocalLLMJudge(config)
    return RULES[type(config)](config)


def build(spec: JudgeConfig | Mapping[str, Any]) -> Judge:
    """A judge on its own (the library's entry point): from its settings, or from a mapping holding what a run
    config's `judge:` section holds, e.g. `build({"kind": "numeric"})`; a bad mapping raises pydantic's
    `ValidationError` naming the key."""
    return build_judge(parse_judge(dict(spec)) if isinstance(spec, Mapping) else spec)


def judge_fingerprint(config: JudgeConfig) -> str:
    """The judge's settings, the text of every prompt template it uses (a changed template re-judges) and the
    refusal phrases the rules match."""
    def templates(node: JudgeConfig) -> list[str]:
        if isinstance(node, CombinedJudgeConfig):
            return [t for child in node.judges for t in templates(child)]
        return [template_text(node.template, JUDGE_TEMPLATE)] if isinstance(node, LLMJudgeConfig) else []

    return fingerprint(config.model_dump(mode="json"), templates(config), REFUSAL_PATTERNS)


def judge_part(config: JudgeConfig, key: str = "judge") -> Digest:
    """`judge_fingerprint` as a named part of a fingerprint, recorded with the judge's settings under `key` (where
    the configuration holds them), so that a changed setting is named: `judge.kind changed (token_f1 -> contains)`."""
    return Digest(judge_fingerprint(config), {key: config.model_dump(mode="json")})
