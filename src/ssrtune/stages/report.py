"""The comparison report of the run: report.md, report.html and figures/ (ssrtune.report)."""

from __future__ import annotations

from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.stages.base import BASE, Inputs, Stage, trained_models
from ssrtune.stages.evaluate import Evaluate
from ssrtune.storage.layout import RunLayout


class Report(Stage):
    """Inputs: none; rewritten every time from the evaluations (cheap)."""

    name = "report"

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        return {BASE: Evaluate(), **{model.name: Evaluate(model) for model in trained_models(config)}}

    def artifact(self, layout: RunLayout) -> Path:
        return layout.report

    def make(self, inputs: Inputs) -> Path:
        from ssrtune.report import write_report  # matplotlib and rich tables: only when a report is written

        return write_report([inputs.layout.root])

    def describe(self, result: Path) -> str:
        return str(result)
