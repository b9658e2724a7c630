"""The comparison report of one or more runs: base against each fine-tuning method, and method against method.

Modules, one job each: `results` reads a run's files; `analysis` computes each model's statistics; `comparison`
pairs two methods on the same documents and pools runs; `tables` is the one table writer (markdown, HTML, rich);
`formats` spells numbers; `sections` builds the tables; `figures` draws them; `summary` is the console summary
and its reading; `document` writes report.json, report.md and report.html.
"""

from ssrtune.report.document import analyse, write_report
from ssrtune.report.results import ReportError

__all__ = ["ReportError", "analyse", "write_report"]
