"""A whole run: the list of its stages, each run after the stages it needs and reused where already done.

Library use: `run(load_config("configs/quickstart.yaml"))`, or one stage with its upstream stages:
`Run(config)(Train(trained_models(config)[0]))`.
"""

from __future__ import annotations

from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.preflight import check_run
from ssrtune.storage.rundir import run_guard
from ssrtune.stages.base import Run, Stage, trained_methods, trained_models
from ssrtune.stages.data import Data
from ssrtune.stages.evaluate import Evaluate
from ssrtune.stages.report import Report
from ssrtune.stages.select import Select
from ssrtune.stages.train import Train


def plan(config: RunConfig) -> list[Stage]:
    """data -> targets per method -> train -> evaluate -> report: the stages asked for; each runs after the stages
    it needs (`plan_closure`): a method's candidate sources and the judge's verdicts on them (`Select.needs`)."""
    models = trained_models(config)
    return [Data(), *(Select(method) for method in trained_methods(config)), *(Train(model) for model in models),
            Evaluate(), *(Evaluate(model) for model in models), Report()]


def run(config: RunConfig, fresh: bool = False) -> Path:
    """Run every stage of `plan(config)`, once `preflight.check_run` found nothing to refuse, as `make` would:
    what is done under the same inputs is reused, and a stage whose inputs changed is redone, with one line saying
    what changed; so are the stages that depend on it, each only if its own inputs changed as a result (a model
    whose targets came out the same is not retrained). `fresh` discards every stage's results and redoes them all.
    Returns the report's path."""
    check_run(config)
    with run_guard(config.path):  # one writer per run; a full or read-only disk ends as one DiskFaultError
        runner = Run(config, fresh, redo_stale=True)
        for stage in plan(config):
            runner(stage)
        return runner(Report())
