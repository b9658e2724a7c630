"""The task data: data/train.jsonl and data/test.jsonl from a built-in recipe or the user's files, and the eval sets
the run makes: the hard in-domain set data/hard.jsonl and the out-of-domain set data/ood.jsonl."""

from __future__ import annotations

import logging
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

from ssrtune.config.run import DataConfig, FileDataConfig, RunConfig
from ssrtune.data.hub import hub_fingerprint, is_hub
from ssrtune.data.loaders import load_records, save_records
from ssrtune.data.recipes.coqa import conversational_qa
from ssrtune.data.recipes.grounded import GROUNDED_QA_SYSTEM
from ssrtune.data.recipes.squad import grounded_qa, hard_grounded_qa
from ssrtune.data.schema import DataError, Message, Record
from ssrtune.stages.base import Inputs, Stage
from ssrtune.storage.fingerprints import Digest, Parts, file_digest, fingerprint
from ssrtune.storage.layout import RunLayout

log = logging.getLogger(__name__)

RECIPES = {"grounded-qa": grounded_qa}
HARD_SETS = {"grounded-qa": hard_grounded_qa}  # each recipe's hard in-domain set (evaluate.hard)
# The system prompt each built-in task brings in its records (part of its data's fingerprint: it is in the code).
RECIPE_SYSTEM = {"grounded-qa": GROUNDED_QA_SYSTEM, "coqa": GROUNDED_QA_SYSTEM}


class Data(Stage):
    """Normalised train and test records.

    Inputs: the `data` section (with `data.system_prompt`), a recipe's own system prompt, the hashes of the
    user's files (of every file of a dataset folder), and the `datasets` fingerprint of Hub data (data.hub). Resume:
    remade when the fingerprint changed (an edited file or a new revision is re-read),
    otherwise read back; cheap, so never refused.
    """

    name = "data"
    kind, on_change = "whole", "redo"

    def artifact(self, layout: RunLayout) -> Path:
        return layout.data

    def sidecar(self, layout: RunLayout) -> Path:
        return layout.data / "data.meta.json"

    def discarded(self, layout: RunLayout) -> None:
        return None  # the folder also holds the eval sets the run makes; train.jsonl and test.jsonl are rewritten

    def finished(self, layout: RunLayout) -> bool:
        return True  # the sidecar is written after the records

    def parts(self, inputs: Inputs) -> Parts:
        data = inputs.config.data
        sources = {"data.train_file": data.train_file, "data.test_file": data.test_file} if isinstance(
            data, FileDataConfig) else {}
        return {"data": data.model_dump(mode="json"), "the recipe's system prompt": RECIPE_SYSTEM.get(data.recipe),
                **{f"the contents of {key}": Digest(source_digest(source) or "absent")
                   for key, source in sources.items()}}

    def load(self, inputs: Inputs) -> tuple[list[Record], list[Record]]:
        return load_records(inputs.layout.train_records), load_records(inputs.layout.test_records)

    def make(self, inputs: Inputs) -> tuple[list[Record], list[Record]]:
        skipped: dict[str, list[DataError]] = {}
        train_records, test_records = prepare(inputs.config.data, skipped)
        for split, errors in skipped.items():
            if errors:
                log.warning("data: skipped %d bad %s row(s) (data.on_error: skip); first: %s", len(errors), split,
                            errors[0])
        warn_of_overlap(train_records, test_records)
        save_records(inputs.layout.train_records, train_records)
        save_records(inputs.layout.test_records, test_records)
        inputs.summary.update(n_train=len(train_records), n_test=len(test_records),
                              skipped={split: [str(e) for e in errors] for split, errors in skipped.items()})
        return train_records, test_records

    def describe(self, result: tuple[list[Record], list[Record]]) -> str:
        return f"{len(result[0])} train, {len(result[1])} test examples"


def warn_of_overlap(train_records: list[Record], test_records: list[Record]) -> None:
    """Say when test examples are also training examples (the same turns and document): their task score measures
    what the model memorised, not the task. Common when data.test_file names the training file by mistake."""
    def asked(record: Record) -> tuple:
        return tuple((m.role, m.content) for m in record.messages), record.context

    seen = set(map(asked, train_records))
    shared = sum(asked(r) in seen for r in test_records)
    if shared:
        log.warning("data: %d of the %d test examples are also training examples (same turns and document): the "
                    "task score on them measures memory, not the task; give data.test_file held-out examples",
                    shared, len(test_records))


def source_digest(source: str) -> str | None:
    """What a data source's records depend on: a file's hash; a dataset folder's files, each by its path in the
    folder and its hash (its content, wherever the folder is); a Hub dataset's fingerprint."""
    if is_hub(source):
        return hub_fingerprint(source)
    path = Path(source)
    if path.is_dir():
        return fingerprint(sorted((f.relative_to(path).as_posix(), file_digest(f)) for f in path.rglob("*")
                                  if f.is_file()))
    return file_digest(path) if path.is_file() else None


def prepare(config: DataConfig, skipped: dict[str, list[DataError]] | None = None) -> tuple[list[Record], list[Record]]:
    """Train and test records of the configured recipe or files. With `data.on_error: skip`, the bad rows of each
    file are left out and listed in `skipped` under "train" and "test"."""
    if not isinstance(config, FileDataConfig):
        return RECIPES[config.recipe](config)
    if config.on_error == "raise":
        splits = (load_records(config.train_file, config.fields, format=config.format),
                  load_records(config.test_file, config.fields, format=config.format))
    else:
        skipped = {} if skipped is None else skipped
        skipped["train"], skipped["test"] = [], []
        splits = (load_records(config.train_file, config.fields, skipped["train"], config.format),
                  load_records(config.test_file, config.fields, skipped["test"], config.format))
    return tuple(with_system_prompt(records, config.system_prompt) for records in splits)


def with_system_prompt(records: list[Record], system: str | None) -> list[Record]:
    """`system` (data.system_prompt) as the system turn of every record that has none of its own."""
    if not system:
        return records
    turn = Message(role="system", content=system)
    return [r if r.messages[0].role == "system" else r.model_copy(update={"messages": [turn, *r.messages]})
            for r in records]


class MadeSet(Stage):
    """An eval set the run makes from a built-in recipe, data/<name>.jsonl (`name`: the suite). Inputs: `parts`.
    Resume: remade when they changed (cheap)."""

    kind, on_change = "whole", "redo"
    what: ClassVar[str]  # the set, in the stage's console line

    def artifact(self, layout: RunLayout) -> Path:
        return layout.suite_records(self.name)

    def sidecar(self, layout: RunLayout) -> Path:
        return layout.suite_records(self.name).with_suffix(".meta.json")

    def load(self, inputs: Inputs) -> list[Record]:
        return load_records(self.artifact(inputs.layout))

    def make(self, inputs: Inputs) -> list[Record]:
        records = self.records(inputs.config)
        save_records(self.artifact(inputs.layout), records)
        inputs.summary["n"] = len(records)
        return records

    @abstractmethod
    def records(self, config: RunConfig) -> list[Record]:
        ...

    def describe(self, result: list[Record]) -> str:
        return f"{len(result)} {self.what} examples"


class OodData(MadeSet):
    """The out-of-domain set (`evaluate.ood`). Inputs: its settings and its recipe's system prompt."""

    name, what = "ood", "out-of-domain"

    def parts(self, inputs: Inputs) -> Parts:
        ood = inputs.config.evaluate.ood
        return {"evaluate.ood": ood.model_dump(mode="json"), "the recipe's system prompt": RECIPE_SYSTEM[ood.recipe]}

    def records(self, config: RunConfig) -> list[Record]:
        return conversational_qa(config.evaluate.ood)


class HardData(MadeSet):
    """The hard in-domain set (`evaluate.hard`), from the task's recipe. Inputs: its settings, the `data` section
    (the splits it stays out of, the document window) and the recipe's system prompt."""

    name, what = "hard", "hard in-domain"

    def parts(self, inputs: Inputs) -> Parts:
        config = inputs.config
        return {"evaluate.hard": config.evaluate.hard.model_dump(mode="json"),
                "data": config.data.model_dump(mode="json"), "the recipe's system prompt": RECIPE_SYSTEM[
                    config.data.recipe]}

    def records(self, config: RunConfig) -> list[Record]:
        return HARD_SETS[config.data.recipe](config.data, config.evaluate.hard)
