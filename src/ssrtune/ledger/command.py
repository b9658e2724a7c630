"""The `ssrtune reproduce` command (registered by `ssrtune.cli`); what it runs is imported when it runs, so that
`ssrtune --help` starts without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def reproduce(
    config: Annotated[Path, typer.Argument(help="The experiment's configuration (YAML), with a fixed model.dtype.",
                                           exists=True, dir_okay=False)],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value overrides, e.g. model.dtype=float32")
                         ] = None,
    ledger: Annotated[Path, typer.Option(help="The ledger's folder, in the repository.")] = Path("results/reproduce"),
    run_dir: Annotated[Optional[Path], typer.Option(help="Where the run directories go, one per CPU kind "
                                                     "(<run-dir>/avx512, ...); default: the configuration's run_dir."
                                                     )] = None,
    budget: Annotated[Optional[float], typer.Option(help="Minutes: stop cleanly before a model that would pass "
                                                    "them (judged by the last model's wall time).", min=0)] = None,
) -> None:
    """Continue a long experiment from its results ledger on this machine: restore the ledger into this CPU kind's
    run directory, skip what is current, run the rest (the base model's unit, then each model) and record each unit
    in the ledger as it finishes, to be committed."""
    from ssrtune.config.run import load_config
    from ssrtune.ledger.driver import reproduce as continue_experiment
    from ssrtune.ledger.entries import cpu_kind

    base = load_config(config, overrides or [])
    folder = (run_dir or base.path) / cpu_kind()
    left = continue_experiment(load_config(config, [*(overrides or []), f"run_dir={folder}"]), ledger, budget,
                               typer.echo)
    report = folder / "report.md"
    if not left:  # else the driver said why it stopped, and how many rows are left
        typer.echo("every row is in the ledger" + (f"; report: {report}" if report.exists() else ""))
