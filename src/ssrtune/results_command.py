"""`ssrtune results`: docs/RESULTS.md from a run directory (ssrtune.report.results_doc). Its own module so that the
command line registers it without importing the report (matplotlib, the tables) until it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def results(
    run_dir: Annotated[Path, typer.Argument(file_okay=False, help="The run directory; with --ledger, the folder the "
                                            "ledger is restored into (<run_dir>/<CPU kind>, made if missing).")],
    design: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="The pre-registered design (markdown), "
                                         "included verbatim at the top.")],
    margin: Annotated[float, typer.Option(help="Non-inferiority margin of task accuracy a − b, below 0 (e.g. -0.05): "
                                          "the one the design states.")],
    out: Annotated[Path, typer.Option(help="The document to write.")] = Path("docs/RESULTS.md"),
    figures: Annotated[Optional[Path], typer.Option(file_okay=False, help="Folder of the figures (default: results/ "
                                                    "beside --out).")] = None,
    discussion: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="A hand-written discussion "
                                                       "(markdown), included verbatim at the end.")] = None,
    pair: Annotated[Optional[list[str]], typer.Option(help="A method pair a:b to compare (repeat for several); "
                                                      "default: ssr:sft and ssr:sft_rejected.")] = None,
    ledger: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="A results ledger "
                                                   "(results/reproduce) to restore first, with --config.")] = None,
    config: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="The ledger's experiment "
                                                   "(configs/reproduce.yaml).")] = None,
) -> None:
    """Write docs/RESULTS.md and its figures from a run directory at any point of the experiment: the design, then the
    models (pending ones named), minimum detectable effects, primary endpoints, tables and figures."""
    from ssrtune.report.results_doc import DEFAULT_PAIRS, write_results

    if (ledger is None) != (config is None):
        raise typer.BadParameter("--ledger and --config go together: the ledger's results and the experiment's "
                                 "configuration")
    if ledger is not None:  # a weightless run directory made from the ledger, with what made each entry
        from ssrtune.config.run import load_config
        from ssrtune.ledger.entries import cpu_kind
        from ssrtune.ledger.restore import restore_results

        run_dir = run_dir / cpu_kind()
        names = restore_results(ledger, load_config(config, [f"run_dir={run_dir}"]), cpu_kind())
        typer.echo(f"restored from {ledger}: {', '.join(names) or 'nothing yet'}")
    elif not run_dir.is_dir():
        raise typer.BadParameter(f"{run_dir}: no such run directory")
    pairs = DEFAULT_PAIRS
    if pair:
        if any(p.count(":") != 1 or "" in p.split(":") for p in pair):
            raise typer.BadParameter(f"--pair takes a:b (two method names), got {', '.join(pair)}")
        pairs = tuple(tuple(p.split(":")) for p in pair)
    typer.echo(f"results: {write_results(run_dir, design, out, figures, margin, pairs, discussion)}")
