"""The run configuration: one YAML file, validated by a typed schema, with `key=value` overrides.

Every field says what it does (`description`); a setting that does not apply where it is given (a judge kind's
field on another kind, a recipe's field with the user's own files) is an error naming it, not silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, Discriminator, Field, Tag, ValidationError, create_model, model_validator

from ssrtune.benchmarks import BENCHMARKS
from ssrtune.judges.config import KINDS, TAG_MARK, JudgeConfig, grounded_qa_judge, parse_judge
from ssrtune.methods import METHODS, restatements
from ssrtune.schema import EndpointConfig, ModelConfig, Strict
from ssrtune.train_config import TrainConfig

DEFAULT_METHODS = ("sft", "ssr")


def _registered(name: str) -> str:
    # Checked against the registry when a config is read, so that a method defined after this import counts too.
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; one of: {', '.join(METHODS)}")
    return name


MethodName = Annotated[str, AfterValidator(_registered)]


class RecipeDataConfig(Strict):
    """A built-in task, built offline: `grounded-qa` is SQuAD questions, some made unanswerable."""

    recipe: Literal["grounded-qa"] = Field("grounded-qa", description="Built-in task; null to use your own files.")
    n_train: int = Field(200, gt=0, description="Training examples.")
    n_test: int = Field(80, gt=0, description="Held-out test examples (from articles the training set does not use).")
    unanswerable_fraction: float = Field(0.5, ge=0.0, le=1.0, description="Share of examples made unanswerable by "
                                         "pairing the question with a paragraph that does not answer it.")
    train_unanswerable_fraction: float | None = Field(None, ge=0.0, le=1.0, description=(
        "The share in the training split only; null = `unanswerable_fraction`. A refusal is a longer target than "
        "most answers, so an even split already weighs refusals more in the loss."))
    test_article_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="Share of the articles held out for "
                                         "the test split.")
    holdout: Literal["test", "dev"] = Field("test", description=(
        "The held-out split the run evaluates (written as data/test.jsonl): `test`, the held-out articles; or `dev`, "
        "for tuning, a part of the training articles (`dev_article_fraction` of them) that the training examples "
        "then leave out, so that tuning never sees the test articles."))
    dev_article_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="With holdout: dev, the share of the "
                                        "training articles held out for the dev split.")
    document_words: int | None = Field(None, gt=0, description=(
        "Cut each document to a window of whole sentences of at most this many words (around the answer where "
        "there is one; a sentence longer than this is kept whole); null = whole paragraphs. Shorter documents make "
        "every stage cheaper."))
    seed: int = Field(0, description="Seed of the article split, the sampling and the unanswerable pairing.")


class FileDataConfig(Strict):
    """The user's own train and test files, in the record format (README: Your own data and model)."""

    recipe: None = Field(description="null: the task comes from `train_file` and `test_file`.")
    train_file: str = Field(description="Training records: .jsonl, .json, .csv, .parquet or a datasets folder.")
    test_file: str = Field(description="Held-out test records, in the same formats.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Our field name -> the column name in the user's files."
    )
    on_error: Literal["raise", "skip"] = Field(
        "raise", description="A bad row in the data files: stop with its file, line and field, or skip it (counted "
                             "in data/data.meta.json and reported).")


def _data_tag(value: Any) -> str:
    recipe = value.get("recipe", "grounded-qa") if isinstance(value, dict) else value.recipe
    return f"recipe{TAG_MARK}{'null' if recipe is None else recipe}"


DataConfig = Annotated[
    Union[Annotated[RecipeDataConfig, Tag(f"recipe{TAG_MARK}grounded-qa")],
          Annotated[FileDataConfig, Tag(f"recipe{TAG_MARK}null")]],
    Discriminator(_data_tag, custom_error_type="data_recipe", custom_error_message="unknown recipe"),
]


class _GenerateSettings(Strict):
    engine: Literal["transformers", "openai", "vllm"] = Field(
        "transformers", description="transformers (here), openai (any OpenAI-compatible server) or vllm (offline, GPU)."
    )
    endpoint: EndpointConfig | None = Field(None, description="The server of the openai engine.")
    tensor_parallel_size: int = Field(1, gt=0, description="vllm: GPUs to shard the model over.")
    batch_size: int = Field(16, gt=0, description="transformers: prompts per batch.")
    max_new_tokens: int = Field(48, gt=0, description="The longest own answer (or restatement), in tokens.")
    bf16: bool | None = Field(None, description="transformers: bf16 autocast while generating the own answers and "
                                                "restatements; null = where the hardware runs bf16 natively.")

    @model_validator(mode="after")
    def _endpoint_for_openai(self) -> _GenerateSettings:
        if (self.engine == "openai") != (self.endpoint is not None):
            raise ValueError("`endpoint` is required by engine `openai`, and only by it")
        return self


# The base model's own answers, and the restatements of the methods that have one: a restating method brings its
# template setting with it (methods.Restatement.config_key), so adding a method is one class.
GenerateConfig = create_model(
    "GenerateConfig", __base__=_GenerateSettings, __module__=__name__,
    __doc__="How the base model answers the training prompts (own answers) and restates gold answers.",
    **{r.config_key: (str | None, Field(None, description=r.description)) for r in restatements()},
)


class RetentionConfig(Strict):
    """General ability kept after fine-tuning: benchmarks scored against the base model on the same documents."""

    benchmarks: list[Literal[tuple(BENCHMARKS)]] = Field(
        default_factory=lambda: [name for name, b in BENCHMARKS.items() if b.default],
        description="Benchmarks to score (ssrtune.benchmarks.BENCHMARKS).")
    limit: int | None = Field(200, gt=0, description="Questions per benchmark (seeded stratified sample); null = all.")
    seed: int = Field(0, description="Seed of the sample: the same documents for every model.")
    batch_size: int = Field(16, gt=0, description="Sequences per forward pass.")
    gsm8k_shots: int = Field(8, ge=0, le=8, description="Chain-of-thought exemplars before each GSM8K problem.")
    gsm8k_max_new_tokens: int = Field(256, gt=0, description="The longest GSM8K answer, in tokens.")
    kl_prompts: int = Field(16, ge=0, description="General prompts for the KL from the base model; 0 = no KL.")
    kl_prompts_file: str | None = Field(None, description="A text file of general prompts, one per line.")
    kl_max_new_tokens: int = Field(64, gt=0, description="The longest base-model response to a general prompt.")
    kl_top_k: int = Field(256, gt=0, description="Base-model tokens kept per position; the rest form one bucket.")
    harness: Literal["native", "lm-eval"] = Field(
        "native", description="native: ssrtune scores the benchmarks offline; lm-eval: lm-evaluation-harness does "
                              "(it downloads its data).")


class OodConfig(Strict):
    """Out-of-domain task: conversational grounded QA from CoQA, with unanswerable questions."""

    recipe: Literal["coqa"] = Field("coqa", description="The built-in out-of-domain task.")
    n: int = Field(80, gt=0, description="Examples.")
    unanswerable_fraction: float = Field(0.5, ge=0.0, le=1.0, description="Share of unanswerable examples.")
    seed: int = Field(0, description="Seed of the sampling and the unanswerable pairing.")


class EvalDataset(Strict):
    """A user's eval file in the record format, scored by a judge against its gold answers."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Names its results: eval/<model>/<name>.json.")
    file: str = Field(description="The records: .jsonl, .json, .csv, .parquet or a datasets folder.")
    fields: dict[str, str] = Field(default_factory=dict, description="Our field name -> the column name in the "
                                                                     "file.")
    judge: JudgeConfig = Field(default_factory=grounded_qa_judge, description="Decides each answer against the "
                                                                              "gold answers.")


class EvaluateConfig(Strict):
    """Evaluation of the base model and of every trained one."""

    batch_size: int = Field(16, gt=0, description="Prompts per batch when answering the task, OOD and user sets.")
    max_new_tokens: int = Field(48, gt=0, description="The longest answer, in tokens.")
    bf16: bool | None = Field(None, description="bf16 autocast in every evaluation (answers, retention benchmarks, "
                                                "KL); null = where the hardware runs bf16 natively.")
    retention: RetentionConfig | None = Field(None, description="Retention benchmarks; null = none.")
    ood: OodConfig | None = Field(None, description="Out-of-domain task; null = none.")
    datasets: list[EvalDataset] = Field(default_factory=list, description="The user's own eval sets, each judged.")

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
    run_dir: str | None = Field(None, description="Where the run writes; null = runs/<name>.")
    methods: list[MethodName] = Field(default_factory=lambda: list(DEFAULT_METHODS),
                                      description="Fine-tuning methods, one trained model each (ssrtune.methods).")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The base model.")
    data: DataConfig = Field(default_factory=RecipeDataConfig, description="The task: a built-in recipe or your "
                                                                           "own files.")
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="The base model's own answers "
                                                                                 "and restatements.")
    judge: JudgeConfig = Field(default_factory=grounded_qa_judge, description="Decides whether an own answer (or a "
                                                                              "restatement) is acceptable.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Fine-tuning.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Evaluation.")

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
        return parse_judge(tree)
    except ValidationError as err:
        raise ConfigError(_validation_message(path, err)) from None


def _validation_message(path: Path | str | None, err: ValidationError) -> str:
    """One line per error: the key path (without the union tags pydantic puts in it) and what is wrong, in the
    words of the union member where it is one (a judge kind, a data recipe)."""
    lines = [f"{path or 'config'}: invalid configuration"]
    for e in err.errors():
        tags = [str(p) for p in e["loc"] if TAG_MARK in str(p)]
        keys = [str(p) for p in e["loc"] if TAG_MARK not in str(p)]
        where = ".".join(keys) or "(top level)"
        # a validator's own words, without pydantic's "Value error, " before them
        message = str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"]
        if e["type"] == "judge_kind":
            kind = e["input"].get("kind") if isinstance(e["input"], dict) else None
            where, message = ((f"{where}.engine", f"an `llm` judge's engine is transformers or openai, not "
                               f"{e['input'].get('engine')!r}") if kind == "llm" else
                              (f"{where}.kind", f"unknown judge kind {kind!r}; one of: {', '.join(KINDS)}"))
        elif e["type"] == "data_recipe":
            where, message = f"{where}.recipe", f"unknown recipe {e['input'].get('recipe')!r}; grounded-qa or null"
        elif e["type"] == "extra_forbidden" and tags:
            message = _not_applicable(keys[-1], tags[-1])
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def _not_applicable(key: str, tag: str) -> str:
    what, value = tag.split(TAG_MARK)
    if what == "kind":
        kind, _, engine = value.partition("/")
        return f"`{key}` does not apply to a `{kind}` judge" + (f" with engine {engine}" if engine else "")
    if value == "null":
        return f"`{key}` is a setting of a built-in recipe; your own files (recipe: null) don't use it"
    return f"`{key}` is for your own files (recipe: null); the `{value}` recipe doesn't use it"


def dump_config(config: RunConfig, path: Path) -> None:
    from ssrtune.store import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
