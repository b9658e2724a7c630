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
from ssrtune.export import ExportError
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
def select(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Build each method's training targets and print the share of each target source."""
    from ssrtune.select import source_shares

    cfg = _config(config, overrides)
    records, generations, judgments = _judged(cfg)
    for method in cfg.methods:
        shares = source_shares(pipeline.select_stage(cfg, method, records, generations, judgments, fresh))
        others = ", ".join(f"{source} {share:.1%}" for source, share in shares.items())
        typer.echo(f"{method}: {len(records)} examples, {shares.get('self', 0.0):.1%} self targets ({others})")


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
        rows = pipeline.select_stage(cfg, method, records, generations, judgments, fresh)
        typer.echo(f"{method}: {pipeline.train_stage(cfg, method, rows, fresh)}")


@app.command()
def evaluate(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Evaluate the base model and every trained method on the held-out split."""
    cfg = _config(config, overrides)
    _, test_records = pipeline.prepare_data(cfg)
    for name in ["base", *cfg.methods]:
        pipeline.evaluate_stage(cfg, name, test_records, fresh)
    report([cfg.path])


@app.command("judge-audit")
def judge_audit(
    config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False,
    judge: Annotated[Optional[Path], typer.Option(help="YAML file of the judge to audit (what a config's `judge:` "
                                                  "holds); default: the run's judge.", exists=True, dir_okay=False)] = None,
    labels: Annotated[Optional[Path], typer.Option(help="JSONL file of {id, label: accept|reject} for the run's own "
                                                   "answers.", exists=True, dir_okay=False)] = None,
    against: Annotated[Optional[Path], typer.Option(help="YAML file of a reference judge; default (without "
                                                    "--labels): the run's judge.", exists=True, dir_okay=False)] = None,
    name: Annotated[Optional[str], typer.Option(help="Report name: audit/<name>.json and .md.")] = None,
) -> None:
    """Compare a judge with labels or with another judge on the run's own answers."""
    from ssrtune.audit import run_audit
    from ssrtune.config import load_judge_config

    cfg = _config(config, overrides)
    if labels is not None and against is not None:
        raise typer.BadParameter("give --labels or --against, not both")
    audited = load_judge_config(judge) if judge else cfg.judge
    reference = labels or (load_judge_config(against) if against else cfg.judge)
    if reference == audited:
        raise typer.BadParameter("the judge would be compared with itself; give --judge, --labels or --against")
    reference_file = labels or against
    name = name or f"{judge.stem if judge else 'run-judge'}-vs-{reference_file.stem if reference_file else 'run-judge'}"
    json_path, md_path, _ = run_audit(cfg, audited, reference, name, fresh)
    typer.echo(md_path.read_text(encoding="utf-8"))
    typer.echo(f"audit: {json_path}, {md_path}")


@app.command()
def report(run_dirs: Annotated[list[Path], typer.Argument(exists=True, file_okay=False, help="Run directories.")],
           out: Annotated[Optional[Path], typer.Option(help="Where the report goes (default: the one run).")] = None
           ) -> None:
    """Write report.md and report.html (with figures) for one or more runs and print the tables."""
    from ssrtune.report import write_report

    typer.echo(f"report: {write_report(run_dirs, out)}")


@app.command()
def export(run_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Run directory.")],
           method: Annotated[str, typer.Argument(help="The trained method to export, e.g. ssr.")],
           out: Annotated[Path, typer.Option(help="A new folder for the model.")],
           dtype: Annotated[str, typer.Option(help="auto (the base model's precision; full fine-tuning: as "
                                              "trained), float32, bfloat16 or float16.")] = "auto") -> None:
    """Write a trained method as a stand-alone model (LoRA merged in, safetensors, tokenizer, model card)."""
    from ssrtune.export import export as export_model

    typer.echo(f"exported: {export_model(run_dir, method, out, dtype)}")


def entry() -> None:
    """Console script: known user errors print one clear line, not a traceback."""
    try:
        app()
    except (ConfigError, DataError, PromptTooLongError, StaleArtifactError, FileNotFoundError, EndpointError,
            MissingExtraError, ReportError, ExportError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        sys.exit(2)
