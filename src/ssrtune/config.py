"""The run configuration: one YAML file, validated by a typed schema, with `key=value` overrides."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

METHODS = ("sft", "ssr")
Method = Literal["sft", "ssr", "s3ft", "sdft", "self_only"]
RULE_KINDS = ("refusal", "contains", "exact", "token_f1", "recall", "numeric", "regex")
ANSWER_KINDS = ("contains", "exact", "token_f1", "recall", "numeric", "regex")  # compare with the gold answer
# Gradient checkpointing by default above this many parameters: a 7B LoRA run at batch 8 x 512 needs more than
# 80 GB without it (16 GB with it, issue 9); below 1B the activations fit and recomputing them costs a third more time.
GRADIENT_CHECKPOINTING_ABOVE = 1e9


class Strict(BaseModel):
    # Unknown keys are errors: a typo in a config must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Strict):
    name: str = Field("smollm2-135m-instruct", description="Built-in name, Hub id, local folder or .gguf file.")
    revision: str | None = None
    trust_remote_code: bool = False
    max_context: int | None = Field(
        None, gt=16, description="Longest prompt plus answer, in tokens; null = the model's max_position_embeddings. "
                                 "Longer documents are cut (docs/RELIABILITY.md).")


class DataConfig(Strict):
    recipe: Literal["grounded-qa"] | None = Field("grounded-qa", description="Built-in task; null to use files.")
    train_file: str | None = None
    test_file: str | None = None
    fields: dict[str, str] = Field(
        default_factory=dict, description="Our field name -> the column name in the user's files."
    )
    n_train: int = Field(200, gt=0)
    n_test: int = Field(80, gt=0)
    unanswerable_fraction: float = Field(0.5, ge=0.0, le=1.0)
    test_article_fraction: float = Field(0.3, gt=0.0, lt=1.0)
    seed: int = 0
    on_error: Literal["raise", "skip"] = Field(
        "raise", description="A bad row in the data files: stop with its file, line and field, or skip it (counted "
                             "in data/data.meta.json and reported).")

    @model_validator(mode="after")
    def _recipe_or_files(self) -> DataConfig:
        if self.recipe is None and not (self.train_file and self.test_file):
            raise ValueError("data: set `recipe`, or both `train_file` and `test_file`")
        return self


class EndpointConfig(Strict):
    """An OpenAI-compatible chat-completions server (OpenAI, vLLM serve, llama.cpp server, TGI)."""

    base_url: str = Field(description="The API root, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="The model name the server knows.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="NAME of the environment variable holding the key; null for a server without one."
    )
    max_concurrency: int = Field(8, gt=0, description="Requests in flight at once.")
    timeout_s: float = Field(60, gt=0, description="Per-request timeout (connect, and each read or write).")
    max_retries: int = Field(4, ge=0, description="Retries of a request after a 429, 5xx, timeout or lost connection.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubled on each further retry.")


class GenerateConfig(Strict):
    engine: Literal["transformers", "openai", "vllm"] = Field(
        "transformers", description="transformers (here), openai (any OpenAI-compatible server) or vllm (offline, GPU)."
    )
    endpoint: EndpointConfig | None = Field(None, description="The server of the openai engine.")
    tensor_parallel_size: int = Field(1, gt=0, description="vllm: GPUs to shard the model over.")
    batch_size: int = Field(16, gt=0)
    max_new_tokens: int = Field(48, gt=0)
    bf16: bool | None = Field(None, description="bf16 autocast; null = where the hardware supports it.")
    paraphrase_template: str | None = Field(None, description="s3ft: a Jinja template file for paraphrasing the "
                                            "gold answer; null = the shipped ssrtune/templates/paraphrase.jinja.")
    rewrite_template: str | None = Field(None, description="sdft: a Jinja template file for rewriting the gold "
                                         "answer; null = the shipped ssrtune/templates/rewrite.jinja.")

    @model_validator(mode="after")
    def _endpoint_for_openai(self) -> GenerateConfig:
        if (self.engine == "openai") != (self.endpoint is not None):
            raise ValueError("`endpoint` is required by engine `openai`, and only by it")
        return self


class JudgeConfig(Strict):
    """One judge. Rules: refusal, contains, exact, token_f1, recall, numeric, regex; `all` / `any` compose
    children; `llm` asks a language model (a local one by log-probabilities, or an OpenAI-compatible endpoint)."""

    kind: Literal["refusal", "contains", "exact", "token_f1", "recall", "numeric", "regex", "all", "any", "llm"]
    judges: list[JudgeConfig] = Field(default_factory=list, description="Children of `all` / `any`.")
    skip_refusals: bool = Field(True, description="Answer-matching rules (contains, exact, token_f1, recall, "
                                "numeric, regex): accept when the gold answer is a refusal, leaving that case "
                                "to a `refusal` judge.")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="token_f1 / recall: the least score accepted; "
                             "llm: the least probability of the accept word.")
    tolerance: float = Field(1e-6, ge=0.0, description="numeric: the largest absolute difference accepted.")
    pattern: str | None = Field(None, description="regex: searched in the candidate; with a group, the group "
                                "must equal a gold answer (normalised), without one a match accepts.")
    ignore_case: bool = Field(True, description="regex: case-insensitive matching.")
    backend: Literal["local", "endpoint"] = Field("local", description="llm: a local Hugging Face model decides "
                                                  "by log-probabilities, or an OpenAI-compatible endpoint replies.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="llm, local backend: the judge model.")
    template: str | None = Field(None, description="llm: a Jinja prompt template file; null = the shipped "
                                 "ssrtune/templates/judge.jinja.")
    verdict_words: tuple[str, str] = Field(("Yes", "No"), description="llm: the words for accept and reject.")
    batch_size: int = Field(8, gt=0, description="llm: items per forward pass (local) or per request wave.")
    bf16: bool | None = Field(None, description="llm, local: bf16 autocast; null = where the hardware supports it.")
    endpoint: EndpointConfig | None = Field(None, description="llm, endpoint backend: the server.")
    max_tokens: int = Field(8, gt=0, description="llm, endpoint: the longest reply asked for.")

    @model_validator(mode="after")
    def _children(self) -> JudgeConfig:
        if (self.kind in ("all", "any")) != bool(self.judges):
            raise ValueError("`judges` is required by `all` / `any`, and only by them")
        if (self.kind == "llm" and self.backend == "endpoint") != (self.endpoint is not None):
            raise ValueError("`endpoint` is required by an `llm` judge with backend `endpoint`, and only by it")
        if self.kind == "llm" and self.backend == "endpoint" and self.model_fields_set & {"model", "bf16"}:
            raise ValueError("`model` / `bf16` are for the local backend; the endpoint's model is `endpoint.model`")
        if (self.kind == "regex") != (self.pattern is not None):
            raise ValueError("`pattern` is required by `regex`, and only by it")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as err:
                raise ValueError(f"`pattern` is not a valid regular expression: {err}") from None
        if len({w.strip().lower() for w in self.verdict_words}) != 2 or not all(w.strip() for w in self.verdict_words):
            raise ValueError("`verdict_words` must be two different non-blank words")
        # A setting given to a judge that ignores it is almost surely a mistake in the YAML.
        used_by = {"threshold": ("token_f1", "recall", "llm"), "tolerance": ("numeric",), "ignore_case": ("regex",),
                   "skip_refusals": ANSWER_KINDS, "backend": ("llm",), "model": ("llm",), "template": ("llm",),
                   "verdict_words": ("llm",), "batch_size": ("llm",), "bf16": ("llm",), "max_tokens": ("llm",),
                   "endpoint": ("llm",)}
        for key in sorted(self.model_fields_set & used_by.keys()):
            # A default value is not a mistake: a resolved config written to disk lists every field.
            default = type(self).model_fields[key].get_default(call_default_factory=True)
            if self.kind not in used_by[key] and getattr(self, key) != default:
                raise ValueError(f"`{key}` does not apply to a `{self.kind}` judge (only to {', '.join(used_by[key])})")
        return self


def grounded_qa_judge() -> JudgeConfig:
    """Accept an own answer that refuses exactly where the gold refuses and contains the gold answer elsewhere."""
    return JudgeConfig(kind="all", judges=[JudgeConfig(kind="refusal"), JudgeConfig(kind="contains")])


SAVE_INTERVAL = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>steps?|epochs?|s|m|h)\s*$")
SECONDS_PER = {"s": 1, "m": 60, "h": 3600}


def parse_save_every(text: str) -> tuple[str, float]:
    """`train.save_every` as (unit, amount): ("steps", 200), ("epoch", 0.25) or ("seconds", 1800)."""
    match = SAVE_INTERVAL.match(text)
    if match is None or float(match["number"]) <= 0:
        raise ValueError(f"{text!r} is not an interval: write e.g. '0.25 epoch', '200 steps', '30m', '2h' or '900s'")
    number, unit = float(match["number"]), match["unit"]
    if unit.startswith("step"):
        if not number.is_integer():
            raise ValueError(f"{text!r}: a number of steps is a whole number")
        return "steps", number
    if unit.startswith("epoch"):
        return "epoch", number
    return "seconds", number * SECONDS_PER[unit]


class TrainConfig(Strict):
    full: bool = Field(False, description="Full fine-tuning instead of LoRA.")
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_target_modules: list[str] | str = "all-linear"
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(8, gt=0, description="The global batch: examples per optimizer step, over all processes.")
    micro_batch_size: int | None = Field(None, gt=0, description=(
        "Examples per forward pass on each device; the rest of the global batch is gradient accumulation "
        "(batch_size / (micro_batch_size x processes), which must be a whole number). null = the whole per-process "
        "share of the batch at once."))
    max_length: int = Field(512, gt=16)
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    seed: int = 0
    bf16: bool | None = Field(None, description="bf16 autocast; null = where the hardware supports it.")
    gradient_checkpointing: bool | None = Field(None, description=(
        "Recompute activations in the backward pass (less memory, about a third more time); null = on for models "
        f"over {GRADIENT_CHECKPOINTING_ABOVE:.0e} parameters."))
    quantization: Literal["4bit"] | None = Field(None, description=(
        "4bit: QLoRA (the frozen base model in 4-bit NF4 through bitsandbytes; CUDA only, LoRA only; "
        "pip install 'ssrtune[qlora]')."))
    save_every: str = Field("0.25 epoch", description=(
        "Checkpoint interval, for resuming after a crash: a fraction of an epoch ('0.25 epoch'), a number of "
        "optimizer steps ('200 steps') or a time ('30m', '2h', '900s'). Not part of the training fingerprint."))
    report_to: Literal["none", "tensorboard", "trackio", "wandb"] = Field("none", description=(
        "Where the Trainer logs the loss besides models/<method>/ssrtune_train.json; each needs its extra, "
        "e.g. pip install 'ssrtune[tensorboard]'."))
    num_processes: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(1, description=(
        "Data-parallel training processes launched through `accelerate` (DDP), one per GPU; auto = every visible "
        "GPU (1 without GPUs). `batch_size` stays the global batch, so the result does not depend on this number."))
    accelerate_config: str | None = Field(None, description=(
        "An `accelerate config` file for multi-process training (e.g. FSDP or DeepSpeed on GPUs)."))

    # How the training runs, not what it learns: a change of these resumes the same model (see fingerprint_settings).
    EXECUTION_ONLY: ClassVar[frozenset[str]] = frozenset({
        "micro_batch_size", "gradient_checkpointing", "save_every", "report_to", "num_processes", "accelerate_config"})
    REMOVED: ClassVar[dict[str, str]] = {
        "save_steps": "train.save_every (e.g. '200 steps', '0.25 epoch', '30m')",
        "gradient_accumulation_steps": "train.micro_batch_size (accumulation = batch_size / (micro_batch_size x "
                                       "processes); batch_size is the global batch)",
    }

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        for key in sorted(cls.REMOVED.keys() & (data.keys() if isinstance(data, dict) else set())):
            raise ValueError(f"`{key}` was replaced by {cls.REMOVED[key]}")
        return data

    @field_validator("save_every")
    @classmethod
    def _interval(cls, value: str) -> str:
        parse_save_every(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.quantization and self.full:
            raise ValueError("quantization (QLoRA) trains LoRA adapters on a frozen quantized model: not with full")
        if self.num_processes != "auto":
            self.batch_plan(self.num_processes)
        return self

    def batch_plan(self, processes: int) -> tuple[int, int]:
        """(examples per device per forward pass, gradient accumulation steps) for `processes` processes."""
        if self.batch_size % processes:
            raise ValueError(f"batch_size {self.batch_size} does not split evenly across num_processes {processes}")
        micro = self.micro_batch_size or self.batch_size // processes
        if self.batch_size % (micro * processes):
            raise ValueError(f"batch_size {self.batch_size} is not a whole number of micro_batch_size {micro} x "
                             f"{processes} process(es): gradient accumulation must be exact")
        return micro, self.batch_size // (micro * processes)

    @property
    def save_interval(self) -> tuple[str, float]:
        return parse_save_every(self.save_every)

    def fingerprint_settings(self) -> dict[str, Any]:
        """The settings that decide the trained weights: the training stage's fingerprint holds these only."""
        return self.model_dump(mode="json", exclude=set(self.EXECUTION_ONLY))


RETENTION_BENCHMARKS = ["mmlu", "hellaswag", "arc_easy", "arc_challenge", "piqa", "winogrande", "boolq", "gsm8k"]


class RetentionConfig(Strict):
    """General ability kept after fine-tuning: benchmarks scored against the base model on the same documents."""

    benchmarks: list[Literal["mmlu", "hellaswag", "arc_easy", "arc_challenge", "piqa", "winogrande", "boolq",
                             "openbookqa", "sciq", "social_iqa", "gsm8k"]] = Field(
        default_factory=lambda: list(RETENTION_BENCHMARKS))
    limit: int | None = Field(200, gt=0, description="Questions per benchmark (seeded stratified sample); null = all.")
    seed: int = 0
    batch_size: int = Field(16, gt=0)
    gsm8k_shots: int = Field(8, ge=0, le=8, description="Chain-of-thought exemplars before each GSM8K problem.")
    gsm8k_max_new_tokens: int = Field(256, gt=0)
    kl_prompts: int = Field(16, ge=0, description="General prompts for the KL from the base model; 0 = no KL.")
    kl_prompts_file: str | None = Field(None, description="A text file of general prompts, one per line.")
    kl_max_new_tokens: int = Field(64, gt=0)
    kl_top_k: int = Field(256, gt=0, description="Base-model tokens kept per position; the rest form one bucket.")
    backend: Literal["native", "lm-eval"] = Field("native", description="lm-eval: lm-evaluation-harness (online).")


class OodConfig(Strict):
    """Out-of-domain task: conversational grounded QA from CoQA, with unanswerable questions."""

    recipe: Literal["coqa"] = "coqa"
    n: int = Field(80, gt=0)
    unanswerable_fraction: float = Field(0.5, ge=0.0, le=1.0)
    seed: int = 0


class EvalDataset(Strict):
    """A user's eval file in the record format, scored by a judge against its gold answers."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    file: str
    fields: dict[str, str] = Field(default_factory=dict)
    judge: JudgeConfig = Field(default_factory=grounded_qa_judge)


class EvaluateConfig(Strict):
    batch_size: int = Field(16, gt=0)
    max_new_tokens: int = Field(48, gt=0)
    retention: RetentionConfig | None = Field(None, description="Retention benchmarks; null = none.")
    ood: OodConfig | None = Field(None, description="Out-of-domain task; null = none.")
    datasets: list[EvalDataset] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> EvaluateConfig:
        names = [d.name for d in self.datasets]
        reserved = {"task", "retention", "ood", "kl"}
        if len(set(names)) != len(names) or reserved & set(names):
            raise ValueError(f"evaluate.datasets: names must be unique and not one of {sorted(reserved)}")
        return self


class RunConfig(Strict):
    name: str = Field("quickstart", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="A plain folder name (no `/`, no `..`): the run writes only under runs/<name>.")
    run_dir: str | None = Field(None, description="Defaults to runs/<name>.")
    methods: list[Method] = Field(default_factory=lambda: list(METHODS))
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    judge: JudgeConfig = Field(default_factory=grounded_qa_judge)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)

    @property
    def path(self) -> Path:
        return Path(self.run_dir or Path("runs") / self.name)


class ConfigError(ValueError):
    pass


def apply_override(tree: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (so `3`, `true`, `[a, b]` work)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected key=value")
    key, raw = override.split("=", 1)
    *parents, leaf = key.strip().split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
    node[leaf] = yaml.safe_load(raw)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: {err}") from err
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    for override in overrides:
        apply_override(tree, override)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_validation_message(path, err)) from None


def load_judge_config(path: str | Path) -> JudgeConfig:
    """A judge on its own, in a YAML file holding what a run config's `judge:` section holds."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: {err}") from err
    try:
        return JudgeConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_validation_message(path, err)) from None


def _validation_message(path: Path | str | None, err: ValidationError) -> str:
    lines = [f"{path or 'config'}: invalid configuration"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def dump_config(config: RunConfig, path: Path) -> None:
    from ssrtune.store import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
