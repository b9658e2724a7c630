"""The `ssrtune` command line: the whole chain (`run`) and each stage on its own."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ssrtune import pipeline
from ssrtune.config import ConfigError, RunConfig, load_config
from ssrtune.data import DataError, PromptTooLongError
from ssrtune.endpoint import EndpointError
from ssrtune.extras import MissingExtraError
from ssrtune.report import ReportError
from ssrtune.store import StaleArtifactError, read_json

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Fine-tune language models with Selective Self-Rehearsal.")

ConfigArg = Annotated[Path, typer.Argument(help="Run configuration (YAML).", exists=True, dir_okay=False)]
Overrides = Annotated[Optional[list[str]], typer.Argument(help="key=value overrides, e.g. train.epochs=2")]
Fresh = Annotated[bool, typer.Option("--fresh", help="Discard results made with other inputs or settings.")]


def _config(path: Path, overrides: list[str] | None) -> RunConfig:
    config = load_config(path, overrides or [])
    config.path.mkdir(parents=True, exist_ok=True)
    return config


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@app.command()
def run(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Run the whole chain and print the comparison table."""
    report = pipeline.run(_config(config, overrides), fresh)
    typer.echo(f"report: {report}")


@app.command()
def data(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Normalise the task data into the run directory."""
    train_records, test_records = pipeline.prepare_data(_config(config, overrides), fresh)
    typer.echo(f"{len(train_records)} train, {len(test_records)} test examples")


@app.command()
def generate(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Generate the base model's own answers to the training prompts."""
    cfg = _config(config, overrides)
    train_records, _ = pipeline.prepare_data(cfg)
    n = len(pipeline.generate_stage(cfg, train_records, fresh))
    n_failed = read_json(cfg.path / "generations.failures.json")["n_failed"]
    typer.echo(f"{n} generations" + (f", {n_failed} failed (rerun to retry them)" if n_failed else ""))


def _judged(cfg: RunConfig, fresh: bool = False):
    train_records, _ = pipeline.prepare_data(cfg)
    generations = pipeline.generate_stage(cfg, train_records)
    return train_records, generations, pipeline.judge_stage(cfg, train_records, generations, fresh)


@app.command()
def judge(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Judge the own answers against the gold ones."""
    from ssrtune.judge import verdict_counts

    typer.echo(str(verdict_counts(_judged(_config(config, overrides), fresh)[2])))


@app.command()
def select(config: ConfigArg, overrides: Overrides = None) -> None:
    """Build each method's training targets and print the share of self targets."""
    cfg = _config(config, overrides)
    records, generations, judgments = _judged(cfg)
    for method in cfg.methods:
        rows = pipeline.select_stage(cfg, method, records, generations, judgments)
        share = sum(r["source"] == "self" for r in rows) / len(rows)
        typer.echo(f"{method}: {len(rows)} examples, {share:.1%} self targets")


@app.command()
def train(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False,
          full: Annotated[bool, typer.Option("--full", help="Full fine-tuning instead of LoRA.")] = False,
          num_processes: Annotated[Optional[int], typer.Option(
              "--num-processes", help="Data-parallel processes (DDP through accelerate); same as "
              "train.num_processes=N.")] = None) -> None:
    """Fine-tune one model per method on its selected targets."""
    extra = [] if num_processes is None else [f"train.num_processes={num_processes}"]
    cfg = _config(config, [*(overrides or []), *extra])
    if full:
        cfg.train.full = True
    records, generations, judgments = _judged(cfg)
    for method in cfg.methods:
        rows = pipeline.select_stage(cfg, method, records, generations, judgments)
        typer.echo(f"{method}: {pipeline.train_stage(cfg, method, rows, fresh)}")


@app.command()
def evaluate(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Evaluate the base model and every trained method on the held-out split."""
    cfg = _config(config, overrides)
    _, test_records = pipeline.prepare_data(cfg)
    for name in ["base", *cfg.methods]:
        pipeline.evaluate_stage(cfg, name, test_records, fresh)
    report([cfg.path])


@app.command()
def report(run_dirs: Annotated[list[Path], typer.Argument(exists=True, file_okay=False, help="Run directories.")],
           out: Annotated[Optional[Path], typer.Option(help="Where the report goes (default: the one run).")] = None
           ) -> None:
    """Write report.md and report.html (with figures) for one or more runs and print the tables."""
    from ssrtune.report import write_report

    typer.echo(f"report: {write_report(run_dirs, out)}")


def entry() -> None:
    """Console script: known user errors print one clear line, not a traceback."""
    try:
        app()
    except (ConfigError, DataError, PromptTooLongError, StaleArtifactError, FileNotFoundError, EndpointError,
            MissingExtraError, ReportError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        sys.exit(2)
