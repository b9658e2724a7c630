"""A stage and the run that runs stages.

A stage is one object: the stages it `needs`, the named `inputs` its artifact is made from, its `artifact` in the
run directory, and `make`, which resumes from that artifact by the cache rule of `Artifact` (records are reused under
the fingerprint of the inputs they were made with; anything else is redone or refused). `Run` runs a stage after
the stages it needs, each once per process: asking for `evaluate/ssr` runs (or reuses) the data, the own answers,
the judge, ssr's targets and training first. The run decides, for every stage, what happens to work made before
(`Run.rule`): discarded (`fresh`), redone where its inputs changed (`redo_stale`: `ssrtune run`), or refused with
the change named and the command that redoes it (a stage on its own: `ssrtune judge`, `Pipeline.judge()`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar

from ssrtune.config.run import RunConfig, dump_config
from ssrtune.console import redone_line, stage_line
from ssrtune.storage.fingerprints import Parts
from ssrtune.methods import METHODS, Method
from ssrtune.preflight import check_not_launched
from ssrtune.storage.artifacts import CacheRule
from ssrtune.storage.timings import Timings
from ssrtune.config.train import TrainConfig

log = logging.getLogger(__name__)

BASE = "base"  # the name of the model before fine-tuning, in eval/<name>/


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A model a run trains: its name (models/<name>/, eval/<name>/) and the method whose targets it learns. The name
    is its own, so that one method can give several models (seeds, LoRA or full fine-tuning)."""

    name: str
    method: Method

    def train_settings(self, config: RunConfig) -> TrainConfig:
        """Its train settings in `config` (the run's `train` section with the model's overrides): read from the
        configuration each stage runs with, never kept from another one."""
        entry = next((e for e in config.model_entries() if e.name == self.name), None)
        if entry is None:
            raise ValueError(f"the configuration has no model named {self.name!r}")
        return entry.resolve(config.train)


def trained_models(config: RunConfig) -> list[TrainedModel]:
    """The configured models (`models`, or one per method named after it)."""
    return [TrainedModel(entry.name, METHODS[entry.method]) for entry in config.model_entries()]


def trained_methods(config: RunConfig) -> list[Method]:
    """The methods of the configured models, each once, in order."""
    return list(dict.fromkeys(model.method for model in trained_models(config)))


class Stage(ABC):
    """One unit of a run; see the module docstring. A stage of a kind that runs once per method, model or
    restatement is a dataclass whose one field is that subject; `key` tells them apart (`train/ssr`)."""

    name: ClassVar[str]

    @property
    def subject(self) -> str | None:
        """The name of what the stage runs for (its one field's `name`); None for a stage run once per run."""
        fields = dataclasses.fields(self) if dataclasses.is_dataclass(self) else ()
        return getattr(self, fields[0].name).name if fields else None

    @property
    def key(self) -> str:
        return self.name if self.subject is None else f"{self.name}/{self.subject}"

    def needs(self, config: RunConfig) -> list[Stage]:
        """The stages whose artifacts this one reads."""
        return []

    @abstractmethod
    def artifact(self, config: RunConfig) -> Path:
        """Where the stage's result lives in the run directory."""

    @abstractmethod
    def inputs(self, run: Run) -> Parts | None:
        """What the artifact is made from, by name (`storage.fingerprints`); None for a stage remade every time
        (cheap and deterministic)."""

    @abstractmethod
    def make(self, run: Run) -> Any:
        """The stage's result: made, resumed or reused from its artifact, by its resume rule."""

    def describe(self, result: Any) -> str:
        """The result in a few words, for the stage's console line (`200 own answers`)."""
        return ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stage) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"<stage {self.key}>"


class Run:
    """One run directory and the results of the stages run so far in this process.

    `fresh` discards and redoes stages: True for every stage, or a collection of stage names or keys (a stage
    command's `--fresh` names the stages it was asked for, never the ones they need). `redo_stale` redoes a stage
    whose artifact was made from other inputs, saying why in one line; without it such a stage is refused, naming
    the change and the commands that redo it (`command_args`: the configuration and overrides of the CLI command,
    for those commands to be exact).
    """

    def __init__(self, config: RunConfig, fresh: bool | Collection[str] = False, redo_stale: bool = False,
                 command_args: str | None = None):
        check_not_launched()  # every rank of a launcher would run the same stages into the same directory
        self.config, self.path = config, config.path
        self.fresh_stages, self.redo_stale, self.command_args = fresh, redo_stale, command_args
        self._results: dict[str, Any] = {}
        self._redone: set[str] = set()  # the stages whose "redone" line is told
        self.path.mkdir(parents=True, exist_ok=True)
        dump_config(config, self.path / "config.yaml")
        self.timings = Timings(self.path)

    def fresh(self, stage: Stage) -> bool:
        fresh = self.fresh_stages
        return fresh is True or (not isinstance(fresh, bool) and (stage.name in fresh or stage.key in fresh))

    def rule(self, stage: Stage) -> CacheRule:
        """What `stage` does with its artifacts made before (see the class)."""
        def redone(path: Path | None, reasons: list[str]) -> None:
            log.info("%s: redone: %s", stage.key, "; ".join(reasons))
            if stage.key not in self._redone:  # one line per stage: what follows from the first change goes unsaid
                self._redone.add(stage.key)
                part = path is not None and path != stage.artifact(self.config)
                redone_line(stage.key, path.name if part else "", reasons)

        return CacheRule(self.fresh(stage), self.redo_stale, self.redo_hint(stage), redone)

    def redo_hint(self, stage: Stage) -> str:
        """The commands that redo a refused `stage`: the whole chain (every stage the change made stale), or this
        stage alone."""
        if self.command_args is None:
            return ("`ssrtune run` (`ssrtune.run`) redoes it and every stage that depends on it; `--fresh` "
                    "(`fresh=True`) on this stage redoes it alone")
        model = f" --model {stage.subject}" if stage.name in ("train", "evaluate") else ""
        return (f"`ssrtune run {self.command_args}` redoes it and every stage that depends on it; "
                f"`ssrtune {stage.name} {self.command_args}{model} --fresh` redoes it alone")

    def upstream(self, stage: Stage) -> list[Stage]:
        """Every stage `stage` needs, directly or not, in the order they run."""
        order: list[Stage] = []

        def visit(node: Stage) -> None:
            for need in node.needs(self.config):
                if need not in order:
                    visit(need)
                    order.append(need)

        visit(stage)
        return order

    def reusing(self, earlier: Run, stage: Stage) -> Run:
        """This run, holding `earlier`'s results of the stages `stage` needs (made in this process, under the same
        configuration), so that they are neither made nor told again; returns itself."""
        self._results.update({s.key: earlier._results[s.key] for s in self.upstream(stage) if s.key in earlier._results})
        return self

    def __call__(self, stage: Stage) -> Any:
        """The stage's result, after the stages it needs; each stage runs once per process, timed (timings.json)
        and told on the console in one line."""
        if stage.key not in self._results:
            for need in stage.needs(self.config):
                self(need)
            log.info("stage %s", stage.key)
            self.timings.start(stage.key, stage.artifact(self.config))
            try:
                result = stage.make(self)
            except BaseException as err:
                with contextlib.suppress(OSError):  # the stage's own error is the one to report
                    self.timings.end(stage.key, interrupted=isinstance(err, KeyboardInterrupt))
                raise
            seconds = self.timings.end(stage.key)
            stage_line(stage.key, stage.describe(result), seconds)
            self._results[stage.key] = result
        return self._results[stage.key]
