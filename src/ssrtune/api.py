"""The library's entry points, for a notebook or a script as the command line is for a shell: `run` (the whole
chain) and `Pipeline` (one run, stage by stage). Both take a `RunConfig`, the path of a YAML file, or a mapping
holding what that file would hold.

    import ssrtune
    config = ssrtune.load_config("configs/quickstart.yaml", {"data.n_train": 40})
    ssrtune.run(config)                          # every stage, reusing what is done, redoing what is stale
    pipe = ssrtune.Pipeline(config)
    answers = pipe.generate()                    # the base model's own answers, by id
    adapter = pipe.train("ssr")                  # after the stages it needs (data, answers, judge, targets)
    pipe.evaluate("ssr")["task"]["accuracy"]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ssrtune import pipeline
from ssrtune.config.run import RunConfig, load_config
from ssrtune.data.schema import Record
from ssrtune.methods import METHODS
from ssrtune.storage.rundir import run_guard
from ssrtune.stages.base import BASE, Run, Stage, TrainedModel, trained_models
from ssrtune.stages.data import Data
from ssrtune.stages.evaluate import Evaluate
from ssrtune.stages.generate import Generate
from ssrtune.stages.judge import Judge
from ssrtune.stages.report import Report
from ssrtune.stages.select import Select
from ssrtune.stages.train import Train

ConfigLike = RunConfig | str | Path | Mapping[str, Any]


def as_config(config: ConfigLike) -> RunConfig:
    """A `RunConfig` from a config, a YAML file's path, or a mapping (nested sections or dotted keys)."""
    if isinstance(config, RunConfig):
        return config
    return load_config(None, config) if isinstance(config, Mapping) else load_config(config)


def run(config: ConfigLike, fresh: bool = False) -> Path:
    """Run every stage of the chain, reusing what is done and redoing what its inputs changed under (saying so),
    and write the report (printing its summary); returns the report's path. `fresh=True` discards every stage's
    results and redoes them all (`fresh` redoes what you ask for: here, every stage)."""
    return pipeline.run(as_config(config), fresh)


class Pipeline:
    """One run directory, stage by stage. Each method runs its stage after the stages it needs (reused where done
    under the same settings, made where not), holding the run directory while it works, and returns the stage's
    result. A stage whose results were made from other inputs is refused (`StaleArtifactError`, naming what changed);
    `ssrtune.run` or `Pipeline.run` redoes the stale stages. `fresh=True` discards and redoes the stage asked for
    (not the ones it needs), as `--fresh` does on the command line."""

    def __init__(self, config: ConfigLike):
        self.config = as_config(config)
        self._run: Run | None = None  # the stages' results so far: each is made or reused once, and told once

    @property
    def path(self) -> Path:
        return self.config.path

    def stage(self, stage: Stage, fresh: bool = False) -> Any:
        """Any stage object (ssrtune.stages), after the stages it needs."""
        with run_guard(self.config.path):
            if fresh or self._run is None:
                run = Run(self.config, {stage.key} if fresh else False)
                # redoing a stage keeps what it needs and forgets what came after it, which may have read the old result
                self._run = run.reusing(self._run, stage) if self._run else run
            return self._run(stage)

    def data(self, fresh: bool = False) -> tuple[list[Record], list[Record]]:
        """The train and test records (data/train.jsonl, data/test.jsonl)."""
        return self.stage(Data(), fresh)

    def generate(self, fresh: bool = False) -> dict[str, dict]:
        """The base model's own answers to the training prompts, by id: {id, response}."""
        return self.stage(Generate(), fresh)

    def judge(self, fresh: bool = False) -> dict[str, dict]:
        """The judge's verdicts on the own answers, by id: {id, verdict, rationale, score}."""
        return self.stage(Judge(), fresh)

    def select(self, method: str = "ssr", fresh: bool = False) -> list[dict]:
        """A method's training rows: {id, target, source: self | gold | ...}."""
        return self.stage(Select(METHODS[method]), fresh)  # an unknown name: ValueError naming the known ones

    def train(self, model: str = "ssr", fresh: bool = False) -> Path:
        """A configured model trained (models/<model>/); its folder."""
        return self.stage(Train(self.trained_model(model)), fresh)

    def evaluate(self, model: str = BASE, fresh: bool = False) -> dict[str, dict]:
        """The base model's or a trained model's results, by suite (task, hard, ood, user sets, retention)."""
        return self.stage(Evaluate(None if model == BASE else self.trained_model(model)), fresh)

    def report(self) -> Path:
        """report.md, report.html and report.json from every model's evaluation; the path of report.md."""
        return self.stage(Report())

    def run(self, fresh: bool = False) -> Path:
        """Every stage, as `ssrtune.run` (redoing the stale ones; `fresh=True`: every one)."""
        return pipeline.run(self.config, fresh)

    def trained_model(self, name: str) -> TrainedModel:
        models = {m.name: m for m in trained_models(self.config)}
        if name not in models:
            raise ValueError(f"{name!r} is not a model of this run; one of: {', '.join(models)}")
        return models[name]
