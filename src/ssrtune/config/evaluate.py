"""The evaluation settings: which engine answers the held-out prompts, the judge of the answers, and the suites
(retention benchmarks, the hard in-domain set, the out-of-domain task, the user's own eval sets)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from ssrtune.config.engine import EngineSettings
from ssrtune.config.fields import PLAIN_NAME, Strict
from ssrtune.config.judges import JudgeConfig
from ssrtune.data.formats import DataFormat, check_format_fields
from ssrtune.data.schema import check_field_mapping
from ssrtune.inference.engine import ENGINES
from ssrtune.registry import BENCHMARKS


class RetentionConfig(Strict):
    """General ability kept after fine-tuning: benchmarks scored against the base model on the same documents."""

    benchmarks: list[Annotated[str, AfterValidator(BENCHMARKS.check)]] = Field(
        default_factory=lambda: [name for name, b in BENCHMARKS.items() if b.default],
        description="Benchmarks to score (registered by ssrtune.evaluation.benchmarks).")
    limit: int | None = Field(200, gt=0, description="Questions per benchmark (seeded stratified sample); null = all.")
    limits: dict[Annotated[str, AfterValidator(BENCHMARKS.check)], Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict, description="Per benchmark, its own number of questions instead of `limit` (e.g. "
                                          "{ifeval: 150}: a generative benchmark costs far more per question); "
                                          "the native harness only.")
    seed: int = Field(0, description="Seed of the sample: the same documents for every model.")
    batch_size: int = Field(16, gt=0, description="Sequences per forward pass.")
    gsm8k_shots: int = Field(8, ge=0, le=8, description="Chain-of-thought exemplars before each GSM8K problem.")
    gsm8k_max_new_tokens: int = Field(256, gt=0, description="The longest GSM8K answer, in tokens.")
    ifeval_max_new_tokens: int = Field(256, gt=0, description="The longest IFEval answer, in tokens "
                                                                "(lm-evaluation-harness allows 1,280).")
    kl_prompts: int = Field(16, ge=0, description="General prompts for the KL from the base model; 0 = no KL.")
    kl_prompts_file: str | None = Field(None, description="A text file of general prompts, one per line.")
    kl_max_new_tokens: int = Field(64, gt=0, description="The longest base-model response to a general prompt.")
    kl_top_k: int = Field(256, gt=0, description="Base-model tokens kept per position; the rest form one bucket.")
    harness: Literal["native", "lm-eval"] = Field(
        "native", description="native: ssrtune scores the benchmarks offline; lm-eval: lm-evaluation-harness does "
                              "(it downloads its data).")

    @model_validator(mode="after")
    def _limits_native(self) -> RetentionConfig:
        if self.limits and self.harness != "native":
            raise ValueError("limits (one number of questions per benchmark) needs harness: native; lm-evaluation-"
                             "harness takes one limit for every task (limit)")
        return self

    def limit_of(self, benchmark: str) -> int | None:
        """How many of `benchmark`'s questions are scored: its own `limits` entry, else `limit`."""
        return self.limits.get(benchmark, self.limit)


class OodConfig(Strict):
    """Out-of-domain task: conversational grounded QA from CoQA, with unanswerable questions."""

    recipe: Literal["coqa"] = Field("coqa", description="The built-in out-of-domain task.")
    n: int = Field(80, gt=0, description="Examples.")
    unanswerable_fraction: float = Field(0.5, ge=0.0, le=1.0, description="Share of unanswerable examples.")
    seed: int = Field(0, description="Seed of the sampling and the unanswerable pairing.")
    document_words: int | None = Field(None, gt=0, description=(
        "Cut each story to a window of at most this many consecutive words, around the first place a gold answer "
        "occurs for an answerable example (which are then drawn among those whose answer occurs in the story as "
        "written: yes/no and reworded answers are left out), at a seeded place for an unanswerable one; null = "
        "whole stories. Bounds the prompt: the 499 CoQA stories have a median of 261 words."))
    history_turns: int | None = Field(None, ge=0, description=(
        "Earlier turns of the conversation kept in the prompt, the latest ones (a turn: a question and its "
        "answer); null = all; 0 = only the final question."))
    judge: JudgeConfig | None = Field(None, description="Decides each answer against the gold answers; null = the "
                                                        "task's judge (`evaluate.judge`, else `judge`).")


class HardConfig(Strict):
    """The hard in-domain set: more held-out questions of the task's recipe (grounded-qa), whose unanswerable ones
    are paired with another paragraph of their own article (same topic, the answer absent), whatever
    `data.distractor` says. Its questions are none of the run's train or test questions, and its articles are the
    held-out split's (data/test.jsonl's), which the training examples never use."""

    n: int = Field(100, gt=0, description="Examples.")
    unanswerable_fraction: float = Field(0.5, ge=0.0, le=1.0, description="Share of unanswerable examples.")
    seed: int = Field(0, description="Seed of the sampling and the unanswerable pairing.")
    judge: JudgeConfig | None = Field(None, description="Decides each answer against the gold answers; null = the "
                                                        "task's judge (`evaluate.judge`, else `judge`).")


class EvalDataset(Strict):
    """A user's eval file, scored by a judge against its gold answers."""

    name: str = Field(pattern=PLAIN_NAME, description="Names its results: eval/<model>/<name>.json.")
    file: str = Field(description="The records: .jsonl, .json, .csv, .parquet, a datasets folder or "
                                  "hf://ORG/NAME[@REVISION][:split] (a Hub dataset; needs network).")
    fields: Annotated[dict[str, str], AfterValidator(check_field_mapping)] = Field(
        default_factory=dict, description="Our field name (id, messages, query, context, response, meta) -> the column "
                                          "name in the file. Other columns are kept in each record's `meta`; the "
                                          "prompt's system turn is the record's own, if any.")
    format: DataFormat = "record"
    judge: JudgeConfig | None = Field(None, description="Decides each answer against the gold answers; null = the "
                                                        "task's judge (`evaluate.judge`, else `judge`).")

    @model_validator(mode="after")
    def _format_fields(self) -> EvalDataset:
        check_format_fields(self.format, self.fields)
        return self


class EvaluateConfig(EngineSettings):
    """Evaluation of the base model and of every trained one. With the vllm engine a trained LoRA adapter is served
    without merging; with the openai engine the server must serve each trained model under its name (docs/USAGE.md)."""

    max_new_tokens: int = Field(48, gt=0, description="The longest answer, in tokens.")
    judge: JudgeConfig | None = Field(None, description="Decides each held-out answer against the gold answers (task "
                                                        "accuracy: the share it accepts); null = the run's `judge`.")
    retention: RetentionConfig | None = Field(None, description="Retention benchmarks; null = none.")
    hard: HardConfig | None = Field(None, description="Hard in-domain set (same-article unanswerables), judged; "
                                                      "needs a built-in recipe (`data.recipe`); null = none.")
    ood: OodConfig | None = Field(None, description="Out-of-domain task; null = none.")
    datasets: list[EvalDataset] = Field(default_factory=list, description="The user's own eval sets, each judged.")

    @model_validator(mode="after")
    def _unique_names(self) -> EvaluateConfig:
        names = [d.name for d in self.datasets]
        reserved = {"task", "hard", "retention", "ood", "kl"}
        if len(set(names)) != len(names) or reserved & set(names):
            raise ValueError(f"evaluate.datasets: names must be unique and not one of {sorted(reserved)}")
        return self

    @model_validator(mode="after")
    def _engine_serves_retention(self) -> EvaluateConfig:
        """What the engine cannot give (by its declared capabilities), refused before the run rather than after the
        first model's answers."""
        retention, can = self.retention, ENGINES[self.engine].can
        if retention is None:
            return self
        if not can.loglikelihood:
            raise ValueError(f"`retention` needs log-likelihoods, which engine {self.engine} does not give: use engine "
                             f"{ENGINES.that_can('loglikelihood')}, or retention: null")
        if retention.harness == "lm-eval" and not can.harness:
            raise ValueError(f"retention.harness lm-eval runs on the {ENGINES.that_can('harness')} "
                             "engine's model: use that engine, or harness native")
        if retention.kl_prompts and not can.next_token_distributions:
            raise ValueError("retention.kl_prompts: the KL from the base model needs whole next-token distributions, "
                             f"which the {self.engine} engine does not give: use engine "
                             f"{ENGINES.that_can('next_token_distributions')}, or kl_prompts: 0")
        return self
