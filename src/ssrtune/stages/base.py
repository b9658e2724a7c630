"""A stage, and the run that runs stages and owns their caching.

A stage declares what it needs (other stages, by name: their results are passed to `make`), what its artifact is
made from (`parts`, by name: `fingerprints`), the kind of artifact it writes and where (`RunLayout`), and `make`.
The run does everything else, the same way for every stage: it runs what a stage needs first, each stage once per
process; checks the artifact's fingerprint; discards it (`fresh`), reuses it, resumes it, redoes it where its
inputs changed (`redo_stale`: `ssrtune run`) or refuses it naming the change and the command that redoes it (a stage
on its own: `ssrtune judge`, `Pipeline.judge()`); and times it and tells it on the console in one line. Kinds:

- `records`: an append-only record file (`RecordFile`), resumed record by record; `make` fills `inputs.out`.
- `whole`: a file or folder reused whole when current and `finished`; a `resumable` one (a training, resumed from
  its checkpoints) has its fingerprint recorded before `make`, any other after it, with `summary`.
- `remade`: cheap and deterministic, made every time from what it needs (a method's targets, the report).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

from ssrtune.config.run import RunConfig, dump_config
from ssrtune.config.train import TrainConfig
from ssrtune.console import redone_line, stage_line
from ssrtune.methods import METHODS, Method
from ssrtune.preflight import check_not_launched
from ssrtune.stages.held import Held
from ssrtune.storage.artifacts import Artifact, CacheRule, RecordFile
from ssrtune.storage.fingerprints import Parts
from ssrtune.storage.layout import BASE, RunLayout
from ssrtune.storage.timings import Timings

log = logging.getLogger(__name__)

__all__ = ["BASE", "Inputs", "Run", "Stage", "TrainedModel", "plan_closure", "trained_methods", "trained_models",
           "without_parts"]


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


@dataclasses.dataclass
class Inputs:
    """What a stage is made from: the configuration, the run's layout, the results of the stages it needs (by the
    names its `needs` gives them: `inputs["verdicts"]`); for a `records` stage, its open record file `out`; for a
    `whole` one, the `summary` its sidecar records beside the fingerprint (counts), which `make` may fill; and the
    models the run's stages share (`held`: the evaluated model, the judges of its answers)."""

    config: RunConfig
    layout: RunLayout
    results: dict[str, Any]
    out: RecordFile | None = None
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    held: Held = dataclasses.field(default_factory=Held)

    def __getitem__(self, name: str) -> Any:
        return self.results[name]


class Stage(ABC):
    """One unit of a run; see the module docstring. A stage of a kind that runs once per method, model or source
    is a dataclass whose first field is that subject; `key` tells them apart (`train/ssr`)."""

    name: ClassVar[str]
    kind: ClassVar[Literal["records", "whole", "remade"]] = "remade"
    on_change: ClassVar[Literal["redo", "refuse"]] = "refuse"  # its artifact made from other inputs, by default
    resumable: ClassVar[bool] = False  # a `whole` artifact made in steps, resumed by `make` itself (a training)

    @property
    def subject(self) -> str | None:
        """The name of what the stage runs for (its first field's `name`); None for a stage run once per run."""
        fields = dataclasses.fields(self) if dataclasses.is_dataclass(self) else ()
        return getattr(self, fields[0].name).name if fields else None

    @property
    def key(self) -> str:
        return self.name if self.subject is None else f"{self.name}/{self.subject}"

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        """The stages whose results this one is made from, by the names `make` reads them under."""
        return {}

    @abstractmethod
    def artifact(self, layout: RunLayout) -> Path:
        """Where the stage's result lives in the run directory."""

    def parts(self, inputs: Inputs) -> Parts | None:
        """What the artifact is made from, by name (`fingerprints`), once the stages it needs are done; a `remade`
        stage has none."""
        return None

    def sidecar(self, layout: RunLayout) -> Path:
        """Where a `whole` artifact's fingerprint is recorded."""
        path = self.artifact(layout)
        return path.with_name(path.name + ".meta.json")

    def discarded(self, layout: RunLayout) -> Path | None:
        """What is deleted when a `whole` artifact is discarded; None: only its sidecar (the files are rewritten)."""
        return self.artifact(layout)

    def finished(self, layout: RunLayout) -> bool:
        """Whether a current `whole` artifact is complete (a training: once its result file is written)."""
        return self.artifact(layout).exists()

    def load(self, inputs: Inputs) -> Any:
        """A current, finished `whole` artifact, read back."""
        return self.artifact(inputs.layout)

    def check(self, inputs: Inputs) -> None:
        """Refuse what the stage can't make, before anything of a `whole` artifact is written or resumed (a training
        this machine can't serve, or with nothing to train on)."""

    @abstractmethod
    def make(self, inputs: Inputs) -> Any:
        """The stage's result, made (or, for `records` and resumable stages, completed) from `inputs`."""

    def describe(self, result: Any) -> str:
        """The result in a few words, for the stage's console line (`200 own answers`)."""
        return ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stage) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"<stage {self.key}>"

    def under(self, key: str) -> bool:
        """Whether this stage is the one keyed `key` or a part of it (`evaluate/ssr/task` of `evaluate/ssr`)."""
        return self.key == key or self.key.startswith(key + "/")


def plan_closure(stages: Iterable[Stage], config: RunConfig) -> list[Stage]:
    """`stages` with every stage they need, directly or not, each once, in the order they run."""
    order: list[Stage] = []

    def visit(node: Stage) -> None:
        for need in node.needs(config).values():
            if need not in order:
                visit(need)
        if node not in order:
            order.append(node)

    for stage in stages:
        visit(stage)
    return order


def without_parts(stages: Iterable[Stage], wholes: Iterable[Stage]) -> list[Stage]:
    """`stages` less the parts of `wholes` (a model's suite stages, of its evaluation), which run within them."""
    wholes = list(wholes)
    return [stage for stage in stages if not any(stage.under(whole.key) and stage != whole for whole in wholes)]


class Run:
    """One run directory and the results of the stages run so far in this process; the one place that caches.

    `fresh` discards and redoes stages: True for every stage, or a collection of stage names or keys, a key with
    the stages under it (a stage command's `--fresh` names the stages it was asked for, never the ones they need;
    `evaluate/ssr` is that model's evaluation with its suite stages). `redo_stale` redoes a stage
    whose artifact was made from other inputs, saying why in one line; without it such a stage is refused, naming
    the change and the commands that redo it (`command_args`: the configuration and overrides of the CLI command,
    for those commands to be exact).
    """

    def __init__(self, config: RunConfig, fresh: bool | Collection[str] = False, redo_stale: bool = False,
                 command_args: str | None = None):
        check_not_launched()  # every rank of a launcher would run the same stages into the same directory
        self.config, self.path, self.layout = config, config.path, RunLayout(config.path)
        self.fresh_stages, self.redo_stale, self.command_args = fresh, redo_stale, command_args
        self._results: dict[str, Any] = {}
        self._redone: set[str] = set()  # the stages whose "redone" line is told
        self.held, self._asked = Held(), 0  # the models stages share, released once the stage asked for is done
        self.path.mkdir(parents=True, exist_ok=True)
        dump_config(config, self.layout.config)
        self.timings = Timings(self.path)

    def fresh(self, stage: Stage) -> bool:
        fresh = self.fresh_stages
        return fresh is True or (not isinstance(fresh, bool) and (stage.name in fresh or any(map(stage.under, fresh))))

    def rule(self, stage: Stage) -> CacheRule:
        """What `stage` does with its artifacts made before (see the class)."""
        def redone(path: Path | None, reasons: list[str]) -> None:
            log.info("%s: redone: %s", stage.key, "; ".join(reasons))
            if stage.key not in self._redone:  # one line per stage: what follows from the first change goes unsaid
                self._redone.add(stage.key)
                part = path is not None and path != stage.artifact(self.layout)
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
        return plan_closure([stage], self.config)[:-1]

    def reusing(self, earlier: Run, stage: Stage) -> Run:
        """This run, holding `earlier`'s results of the stages `stage` needs (made in this process, under the same
        configuration), so that they are neither made nor told again, but for those this run makes fresh (the parts
        of a stage redone: a model's suites); returns itself."""
        self._results.update({s.key: earlier._results[s.key] for s in self.upstream(stage)
                              if s.key in earlier._results and not self.fresh(s)})
        return self

    def __call__(self, stage: Stage) -> Any:
        """The stage's result, after the stages it needs; each stage runs once per process, timed (timings.json)
        and told on the console in one line. The models they shared (`held`) are released once it is done."""
        self._asked += 1
        try:
            return self._result(stage)
        finally:
            self._asked -= 1
            if not self._asked:
                self.held.release()

    def _result(self, stage: Stage) -> Any:
        if stage.key not in self._results:
            results = {name: self(need) for name, need in stage.needs(self.config).items()}
            log.info("stage %s", stage.key)
            self.timings.start(stage.key, stage.artifact(self.layout))
            try:
                result = self._made(stage, Inputs(self.config, self.layout, results, held=self.held))
            except BaseException as err:
                with contextlib.suppress(OSError):  # the stage's own error is the one to report
                    self.timings.end(stage.key, interrupted=isinstance(err, KeyboardInterrupt))
                raise
            seconds = self.timings.end(stage.key)
            stage_line(stage.key, stage.describe(result), seconds)
            self._results[stage.key] = result
        return self._results[stage.key]

    def _made(self, stage: Stage, inputs: Inputs) -> Any:
        """The stage's result by its kind's cache rule (see the module docstring)."""
        layout, rule = self.layout, self.rule(stage)
        if stage.kind == "remade":
            return stage.make(inputs)
        parts = stage.parts(inputs)
        if stage.kind == "records":
            inputs.out = RecordFile(stage.artifact(layout), parts, rule, stage.on_change)
            return stage.make(inputs)
        cache = Artifact(stage.discarded(layout), stage.sidecar(layout), parts, stage.on_change, rule)
        cache.check()
        if cache.current and stage.finished(layout):
            return stage.load(inputs)
        stage.check(inputs)
        if stage.resumable:
            cache.record()
        result = stage.make(inputs)
        if not stage.resumable:
            cache.record(**inputs.summary)
        return result
