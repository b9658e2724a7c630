"""User errors raised by modules that import torch or the stages (the export, the report, the training launch),
defined apart from those modules: the command line prints each as one line, and catching them must not import what
a command imports only when it runs (`import ssrtune.cli` stays fast)."""

from __future__ import annotations


class ExportError(ValueError):
    """A trained model that cannot be exported as asked (ssrtune.export)."""


class ReportError(ValueError):
    """Run directories that cannot be reported on (ssrtune.report)."""


class TrainingProcessError(RuntimeError):
    """The training processes failed before the training finished (ssrtune.training.distributed)."""
