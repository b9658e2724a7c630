"""The comparison report of the run: report.md, report.html and figures/ (ssrtune.report)."""

from __future__ import annotations

from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.stages.base import Run, Stage, trained_models
from ssrtune.stages.evaluate import Evaluate


class Report(Stage):
    """Inputs: none; rewritten every time from the evaluations (cheap)."""

    name = "report"

    def needs(self, config: RunConfig) -> list[Stage]:
        return [Evaluate(), *(Evaluate(model) for model in trained_models(config))]

    def artifact(self, config: RunConfig) -> Path:
        return config.path / "report.md"

    def inputs(self, run: Run) -> None:
        return None

    def make(self, run: Run) -> Path:
        from ssrtune.report import write_report  # matplotlib and rich tables: only when a report is written

        return write_report([run.path])

    def describe(self, result: Path) -> str:
        return str(result)
