"""One settings class per judge kind, each with only its own fields; `JudgeConfig` is their union, told apart by
`kind` (and, for `llm`, by `engine`)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Discriminator, Field, Tag, TypeAdapter, field_validator

from ssrtune.config.fields import EndpointConfig, ModelConfig, Strict, VllmConfig

# A union member's tag shows up in a validation error's location; the `=` marks it so that error messages can
# leave it out of the key path (config.errors.validation_message).
TAG_MARK = "="


class RefusalJudgeConfig(Strict):
    """Accept when the candidate refuses exactly where the gold answer refuses."""

    kind: Literal["refusal"] = "refusal"


class AnswerRuleConfig(Strict):
    """A rule comparing the candidate with the gold answer and its alternatives (`meta.answers`)."""

    skip_refusals: bool = Field(True, description="Accept when the gold answer is a refusal, leaving that case to a "
                                                  "`refusal` judge.")


class ContainsJudgeConfig(AnswerRuleConfig):
    """Accept when a normalised gold answer appears, as whole words, inside the normalised candidate."""

    kind: Literal["contains"] = "contains"


class ExactJudgeConfig(AnswerRuleConfig):
    """Accept when the normalised candidate equals a normalised gold answer."""

    kind: Literal["exact"] = "exact"


class TokenScoreJudgeConfig(AnswerRuleConfig):
    """Accept when the best token F1 (`token_f1`) or token recall (`recall`) against a gold answer reaches the
    threshold."""

    kind: Literal["token_f1", "recall"]
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="The least score accepted.")


class NumericJudgeConfig(AnswerRuleConfig):
    """GSM8K style: accept when the candidate's final number equals the gold's final number."""

    kind: Literal["numeric"] = "numeric"
    tolerance: float = Field(1e-6, ge=0.0, description="The largest absolute difference accepted.")


class RegexJudgeConfig(AnswerRuleConfig):
    """Accept when `pattern` is found in the candidate; with a group, when the group equals a gold answer."""

    kind: Literal["regex"] = "regex"
    pattern: str = Field(description="Searched in the candidate; with a group, the group must equal a gold answer "
                                     "(normalised), without one a match accepts.")
    ignore_case: bool = Field(True, description="Case-insensitive matching.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"not a valid regular expression: {err}") from None
        return pattern


class CombinedJudgeConfig(Strict):
    """`all`: accept when every child accepts; `any`: when one does."""

    kind: Literal["all", "any"]
    judges: list[JudgeConfig] = Field(min_length=1, description="The child judges.")


class LLMJudgeConfig(Strict):
    """A language model compares the candidate with the gold answer, prompted by a Jinja template."""

    kind: Literal["llm"] = "llm"
    template: str | None = Field(None, description="A Jinja prompt template file; null = the shipped "
                                                   "ssrtune/templates/judge.jinja.")
    verdict_words: tuple[str, str] = Field(("Yes", "No"), description="The words for accept and reject (quote "
                                           "them in YAML: a bare Yes / No reads as true / false).")

    @field_validator("verdict_words")
    @classmethod
    def _two_words(cls, words: tuple[str, str]) -> tuple[str, str]:
        if len({w.strip().lower() for w in words}) != 2 or not all(w.strip() for w in words):
            raise ValueError("`verdict_words` must be two different non-blank words")
        return words


class LocalLLMJudgeConfig(LLMJudgeConfig):
    """The judge model runs here and decides by the log-probabilities of the two verdict words after the prompt."""

    engine: Literal["transformers"] = Field("transformers", description="transformers: the judge model runs here.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The judge model (its `dtype` and "
                                                                        "`device_map` place it).")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="The least P(accept word) / (P(accept word) + "
                                                              "P(reject word)) accepted.")
    batch_size: int = Field(8, gt=0, description="Prompts per forward pass, and verdicts written at a time.")
    REMOVED: ClassVar[dict[str, str]] = {"bf16": "the judge model's own dtype: judge.model.dtype (auto | float32 | "
                                                 "bfloat16 | float16)"}


class VllmLLMJudgeConfig(LocalLLMJudgeConfig):
    """Like the transformers engine's judge (the verdict words' log-probabilities), the judge model in vLLM on GPUs."""

    engine: Literal["vllm"] = Field(description="vllm: the judge model in vLLM, in a child process.")
    vllm: VllmConfig = Field(default_factory=VllmConfig, description="The judge's vLLM engine settings.")


class EndpointLLMJudgeConfig(LLMJudgeConfig):
    """An OpenAI-compatible server replies; anything but one verdict word is a failed verdict."""

    engine: Literal["openai"] = Field(description="openai: any OpenAI-compatible server.")
    endpoint: EndpointConfig = Field(description="The server.")
    max_tokens: int = Field(8, gt=0, description="The longest reply asked for.")


def _tag(value: Any) -> str | None:
    """The union member of a judge given as a mapping (from YAML) or as a settings object."""
    get = value.get if isinstance(value, dict) else lambda key, default=None: getattr(value, key, default)
    kind = get("kind")
    if kind is None:
        return None
    return f"kind{TAG_MARK}llm/{get('engine', 'transformers')}" if kind == "llm" else f"kind{TAG_MARK}{kind}"


MEMBERS = [RefusalJudgeConfig, ContainsJudgeConfig, ExactJudgeConfig, TokenScoreJudgeConfig, NumericJudgeConfig,
           RegexJudgeConfig, CombinedJudgeConfig, LocalLLMJudgeConfig, VllmLLMJudgeConfig, EndpointLLMJudgeConfig]


def _member_tags(member: type[Strict]) -> list[str]:
    """The tags `_tag` gives a member's settings: one per kind it takes, with its engine for `llm`."""
    if "engine" in member.model_fields:
        return [f"kind{TAG_MARK}llm/{member.model_fields['engine'].annotation.__args__[0]}"]
    return [f"kind{TAG_MARK}{kind}" for kind in member.model_fields["kind"].annotation.__args__]


TAGS = {tag: member for member in MEMBERS for tag in _member_tags(member)}
KINDS = sorted({tag.split(TAG_MARK)[1].split("/")[0] for tag in TAGS})
LLM_ENGINES = [tag.split("/")[1] for tag in TAGS if "/" in tag]  # the engines an `llm` judge runs on

JudgeConfig = Annotated[
    Union[tuple(Annotated[member, Tag(tag)] for tag, member in TAGS.items())],
    Discriminator(_tag, custom_error_type="judge_kind", custom_error_message="unknown judge kind or engine"),
]
CombinedJudgeConfig.model_rebuild()
_ADAPTER = TypeAdapter(JudgeConfig)


def parse_judge(tree: Any) -> JudgeConfig:
    """A judge's settings from a mapping (what a config's `judge:` holds); pydantic's `ValidationError` if bad."""
    return _ADAPTER.validate_python(tree)


def grounded_qa_judge() -> CombinedJudgeConfig:
    """Accept an own answer that refuses exactly where the gold refuses and contains the gold answer elsewhere."""
    return CombinedJudgeConfig(kind="all", judges=[RefusalJudgeConfig(), ContainsJudgeConfig()])


def leaf_judges(where: str, judge: JudgeConfig) -> list[tuple[str, JudgeConfig]]:
    """(setting, judge) for `judge` and, in an `all` / `any` judge, each judge it combines (`where.judges.N`)."""
    if isinstance(judge, CombinedJudgeConfig):
        return [leaf for n, child in enumerate(judge.judges) for leaf in leaf_judges(f"{where}.judges.{n}", child)]
    return [(where, judge)]


def describe(judge: JudgeConfig) -> str:
    """A one-line summary of a judge, for reports."""
    if isinstance(judge, CombinedJudgeConfig):
        return f"{judge.kind}(" + ", ".join(describe(child) for child in judge.judges) + ")"
    if isinstance(judge, LocalLLMJudgeConfig):
        return f"llm({judge.engine}: {judge.model.name}, threshold {judge.threshold})"
    if isinstance(judge, EndpointLLMJudgeConfig):
        return f"llm(openai: {judge.endpoint.model})"
    return judge.kind
