"""The run configuration: one YAML file, validated by a typed schema, with `key=value` overrides.

Every field says what it does (`description`); a setting that does not apply where it is given (a judge kind's
field on another kind, a recipe's field with the user's own files) is an error naming it, not silently ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from ssrtune.config.engine import EngineSettings
from ssrtune.config.errors import ConfigError, error_words, validation_message
from ssrtune.config.evaluate import EvaluateConfig
from ssrtune.config.fields import PLAIN_NAME, ModelConfig, Strict, VllmConfig
from ssrtune.config.judges import TAG_MARK, JudgeConfig, grounded_qa_judge, leaf_judges, parse_judge
from ssrtune.config.train import MethodName, ModelEntry, TrainConfig, check_models
from ssrtune.data.formats import DataFormat, check_format_fields
from ssrtune.data.hub import is_hub
from ssrtune.data.schema import check_field_mapping
from ssrtune.registry import METHODS, did_you_mean
from ssrtune.storage.artifacts import write_text_atomic

DEFAULT_METHODS = ("sft", "ssr")


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
    distractor: Literal["same_article", "other_article"] = Field("same_article", description=(
        "Where an unanswerable question's document comes from: another paragraph of the question's own article "
        "(the hard case: same topic, the answer absent), or a paragraph of another article of the split (the topic "
        "itself differs: a small model can learn it)."))
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
    """The user's own train and test files, in one of the formats of data.formats (README: Your own data;
    docs/USAGE.md: Your own data and model)."""

    recipe: None = Field(description="null: the task comes from `train_file` and `test_file`.")
    train_file: str = Field(description="Training records: .jsonl, .json, .csv, .parquet, a datasets folder or "
                                        "hf://ORG/NAME[@REVISION][:split] (a Hub dataset; needs network).")
    test_file: str = Field(description="Held-out test records, in the same formats.")
    fields: Annotated[dict[str, str], AfterValidator(check_field_mapping)] = Field(
        default_factory=dict, description="Our field name (id, messages, query, context, response, meta) -> the column "
                                          "name in the user's files. Other columns are kept in each record's `meta`.")
    format: DataFormat = "record"
    system_prompt: str | None = Field(None, description=(
        "The system turn of every record that has none of its own, in generation, training and evaluation (the model "
        "card states it); null = none: the prompt is the record's own turns, and the model's chat template decides "
        "what a conversation without a system turn looks like."))
    on_error: Literal["raise", "skip"] = Field(
        "raise", description="A bad row in the data files: stop with its file, line and field, or skip it (counted "
                             "in data/data.meta.json and reported).")

    @model_validator(mode="after")
    def _format_fields(self) -> FileDataConfig:
        check_format_fields(self.format, self.fields)
        return self


def _data_tag(value: Any) -> str:
    recipe = value.get("recipe", "grounded-qa") if isinstance(value, dict) else value.recipe
    return f"recipe{TAG_MARK}{'null' if recipe is None else recipe}"


DataConfig = Annotated[
    Union[Annotated[RecipeDataConfig, Tag(f"recipe{TAG_MARK}grounded-qa")],
          Annotated[FileDataConfig, Tag(f"recipe{TAG_MARK}null")]],
    Discriminator(_data_tag, custom_error_type="data_recipe", custom_error_message="unknown recipe"),
]


def template_keys() -> list[str]:
    """`generate.<config_key>` of every registered method's restatement (methods.Restatement), in the order the
    methods were defined: read from the registry when a configuration is read, so that a restating method defined
    after this module was imported brings its setting too (adding a method is one class)."""
    return list(dict.fromkeys(source.config_key for method in METHODS.values() for source in method.candidates
                              if getattr(source, "config_key", None)))  # a restatement has a template setting


def _template_key(key: str) -> str:
    """`key`, when it is a restatement's template setting: a key of `generate` that is neither a field nor one of
    these is an unknown key, named with the known key it most resembles."""
    known = template_keys()
    if key not in known:
        raise ValueError(f"unknown key `{key}`{did_you_mean(key, [*GenerateConfig.model_fields, *known])}")
    return key


class GenerateConfig(EngineSettings):
    """How the base model answers the training prompts (own answers) and restates gold answers: besides the fields
    below, `<config_key>: FILE` for each restatement (`paraphrase_template`, `rewrite_template`): a Jinja template
    file of the user's replacing the shipped one; null = the shipped one."""

    model_config = ConfigDict(extra="allow")  # the template settings, checked by _template_key
    __pydantic_extra__: dict[Annotated[str, AfterValidator(_template_key)], str | None] = Field(init=False)

    max_new_tokens: int = Field(48, gt=0, description="The longest own answer (or restatement), in tokens.")

    @model_validator(mode="before")
    @classmethod
    def _every_template_key(cls, data: Any) -> Any:
        """Every restatement's template setting, null where not given, in the methods' order. An unknown key's value
        is left unchecked (None): its one error is the key's (`_template_key`)."""
        if not isinstance(data, dict):
            return data
        keys = template_keys()
        return {**{k: v if k in cls.model_fields else None for k, v in data.items() if k not in keys},
                **{key: data.get(key) for key in keys}}

    def template(self, key: str) -> str | None:
        """The template file given for the restatement setting `key`; None: the shipped template."""
        return (self.model_extra or {}).get(key)


class RunConfig(Strict):
    name: str = Field("quickstart", pattern=PLAIN_NAME,
                      description="A plain folder name (no `/`, no `..`): the run writes only under runs/<name>.")
    run_dir: str | None = Field(None, description="Where the run writes; null = runs/<name>.")
    methods: list[MethodName] | None = Field(None, description=(
        "Fine-tuning methods, one trained model each, named after its method (ssrtune.methods); default sft, ssr. "
        "The short form of `models`: give one or the other."))
    models: list[ModelEntry] | None = Field(None, description=(
        "The trained models, each a name, a method and overrides of the `train` section (several per method: seeds, "
        "LoRA and full fine-tuning); null = one per entry of `methods`."))
    model: ModelConfig = Field(default_factory=ModelConfig, description="The base model.")
    data: DataConfig = Field(default_factory=RecipeDataConfig, description="The task: a built-in recipe or your "
                                                                           "own files.")
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="The base model's own answers "
                                                                                 "and restatements.")
    judge: JudgeConfig = Field(default_factory=grounded_qa_judge, description="Decides whether an own answer (or a "
                                                                              "restatement) is acceptable.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Fine-tuning.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Evaluation.")
    vllm: VllmConfig = Field(default_factory=VllmConfig, description="The vllm engine's settings, for every stage "
                                                                     "whose engine is vllm (generate, evaluate).")

    @model_validator(mode="before")
    @classmethod
    def _methods_or_models(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("models") is not None:
            if data.get("methods") is not None:
                raise ValueError("give `methods` (one model per method) or `models` (named models), not both")
            return data
        return {**data, "methods": list(DEFAULT_METHODS) if data.get("methods") is None else data["methods"]}

    @model_validator(mode="after")
    def _models_resolve(self) -> RunConfig:
        check_models(self.models or [], self.train, error_words)
        return self

    @model_validator(mode="after")
    def _hard_set_from_recipe(self) -> RunConfig:
        if self.evaluate.hard is not None and isinstance(self.data, FileDataConfig):
            raise ValueError("evaluate.hard: the hard in-domain set is drawn from a built-in recipe's articles "
                             "(data.recipe: grounded-qa); your own data files have none: set evaluate.hard: null")
        return self

    def model_entries(self) -> list[ModelEntry]:
        """The trained models: `models`, or one per method named after it."""
        return self.models if self.models is not None else [ModelEntry(name=m, method=m) for m in self.methods]

    @property
    def path(self) -> Path:
        return Path(self.run_dir or Path("runs") / self.name)

    @property
    def task_judge(self) -> JudgeConfig:
        """The judge of the held-out task: `evaluate.judge`, else the run's `judge`."""
        return self.evaluate.judge or self.judge

    def leaf_judges(self) -> list[tuple[str, JudgeConfig]]:
        """(setting, judge) for every judge the run configures, the judges an `all` / `any` judge combines in its
        place: the run's, the task's, the hard set's, the out-of-domain set's and each user eval set's."""
        evaluate = self.evaluate
        judges = [("judge", self.judge), ("evaluate.judge", evaluate.judge),
                  *((f"evaluate.{suite}.judge", getattr(evaluate, suite).judge) for suite in ("hard", "ood")
                    if getattr(evaluate, suite)),
                  *((f"evaluate.datasets.{n}.judge", d.judge) for n, d in enumerate(evaluate.datasets))]
        return [leaf for where, judge in judges if judge is not None for leaf in leaf_judges(where, judge)]


def plain_name(name: str, what: str) -> str:
    """`name`, given on the command line or to the library, when it is a plain file or folder name (PLAIN_NAME)."""
    if not re.fullmatch(PLAIN_NAME, name):
        raise ConfigError(f"{what} {name!r}: a name is letters, digits, `.`, `_` and `-`, starting with a letter or "
                          "digit (it names a file or folder of the run)")
    return name


def apply_override(tree: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (so `3`, `true`, `[a, b]` work)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected key=value")
    key, raw = override.split("=", 1)
    set_key(tree, key, yaml.safe_load(raw))


def set_key(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted `key` (`train.epochs`) in a nested dict to `value`, making the sections on the way."""
    *parents, leaf = key.strip().split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
    node[leaf] = value


def load_config(path: str | Path | None = None,
                overrides: Sequence[str] | Mapping[str, Any] = ()) -> RunConfig:
    """The configuration in the YAML file `path` (None: the defaults), with `overrides` applied: `key=value`
    strings as on the command line (the value read as YAML), or a mapping of dotted keys to values
    (`{"train.epochs": 2}`). A bad setting raises `ConfigError` naming its key."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: {err}") from err
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data_paths_from(tree, path.parent)
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            set_key(tree, key, value)
    else:
        for override in overrides:
            apply_override(tree, override)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(validation_message(path, err, RunConfig)) from None


def data_paths_from(tree: dict[str, Any], folder: Path) -> None:
    """Make the relative data paths of a config file's `tree` (train_file, test_file, each eval set's file) absolute
    from `folder`, the file's own: a config and its data travel together, wherever ssrtune is started. Overrides on
    the command line stay relative to the current directory, as paths typed in a shell are."""
    data, evaluate = tree.get("data"), tree.get("evaluate")
    sections = [(data, "train_file"), (data, "test_file")]
    if isinstance(evaluate, dict) and isinstance(evaluate.get("datasets"), list):
        sections += [(dataset, "file") for dataset in evaluate["datasets"]]
    for section, key in sections:
        value = section.get(key) if isinstance(section, dict) else None
        if isinstance(value, str) and value and not is_hub(value) and not Path(value).expanduser().is_absolute():
            section[key] = os.path.abspath(folder / value)


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
        raise ConfigError(validation_message(path, err, JudgeConfig)) from None


def dump_config(config: RunConfig, path: Path) -> None:
    # `methods` or `models`, as the configuration gave them: it loads again as the same configuration
    tree = config.model_dump(mode="json", exclude={"models"} if config.models is None else {"methods"})
    write_text_atomic(path, yaml.safe_dump(tree, sort_keys=False))
