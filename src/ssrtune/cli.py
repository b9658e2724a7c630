"""The `ssrtune` command line: the whole chain (`run`), each stage on its own (with the stages it needs, run or
reused first), the report of finished runs, and the judge audit."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ssrtune import __version__
from ssrtune.config.errors import ConfigError
from ssrtune.config.run import RunConfig, load_config, load_judge_config
from ssrtune.console import quiet_libraries, resume_notice
from ssrtune.data.chat_format import ChatTemplateError
from ssrtune.data.prompts import PromptTooLongError
from ssrtune.data.schema import DataError
from ssrtune.embedded_command import embedded_app
from ssrtune.errors import ExportError, ReportError, TrainingProcessError
from ssrtune.extras import MissingExtraError
from ssrtune.inference.lm import GenerationFailed, UnsupportedRequest
from ssrtune.ledger.command import reproduce
from ssrtune.net.endpoint import EndpointError
from ssrtune.results_command import results
from ssrtune.storage.artifacts import RecordFileError, StaleArtifactError, read_json
from ssrtune.storage.nofollow import UnsafePathError
from ssrtune.storage.rundir import DiskFaultError, RunDirInUseError, claim, command_scope

# The stages (and torch) are imported by the commands that run them: `--help` and error handling start without them.
if TYPE_CHECKING:
    from ssrtune.stages.base import Run, Stage, TrainedModel

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Fine-tune language models with Selective Self-Rehearsal.")

ConfigArg = Annotated[Path, typer.Argument(help="Run configuration (YAML).", exists=True, dir_okay=False)]
Overrides = Annotated[Optional[list[str]], typer.Argument(help="key=value overrides, e.g. train.epochs=2")]
Fresh = Annotated[bool, typer.Option("--fresh", help="Discard what this command's stages made before (with --model: "
                                                     "those models' only) and make it again; the stages they need "
                                                     "are reused.")]
RunFresh = Annotated[bool, typer.Option("--fresh", help="Discard what every stage made before and redo them all. "
                                                        "Not needed after a change of settings: run redoes the "
                                                        "stages it made stale, and says why.")]
ModelOption = Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A configured model's name (repeat "
                                                          "for several); default: every model.")]


def _run(path: Path, overrides: list[str] | None, uses_models: bool = True) -> Run:
    """The run of a stage command; a stale stage is refused, naming the commands that redo it. A command whose
    stages use the models first checks what `ssrtune run` checks before any work (`preflight.check_run`: a model that
    can't be had, training settings this machine can't serve, a chat template that can't be trained on)."""
    from ssrtune.stages.base import Run

    config = load_config(path, overrides or [])
    if uses_models:
        from ssrtune.preflight import check_run

        check_run(config)
    claim(config.path)  # creates the run directory and holds it (one writer per run) until the command ends
    return Run(config, command_args=shlex.join([str(path), *(overrides or [])]))


def _named(config: RunConfig, names: list[str] | None) -> list[TrainedModel]:
    """The configured models named by --model, in the configuration's order (all of them without the option)."""
    from ssrtune.stages.base import trained_models

    models = trained_models(config)
    unknown = [name for name in names or [] if name not in {m.name for m in models}]
    if unknown:
        raise ConfigError(f"--model {unknown[0]}: no such model in the configuration; one of: "
                          f"{', '.join(m.name for m in models)}")
    return [m for m in models if not names or m.name in names]


def _stages(runner: Run, stages: list[Stage], fresh: bool = False, asked: list[Stage] | None = None) -> list:
    """Run `stages` after the stages they need (saying which, on stderr); their results. `fresh` redoes the stages
    asked for (by default `stages`), never the ones they need."""
    from ssrtune.stages.base import without_parts

    runner.fresh_stages = {stage.key for stage in (stages if asked is None else asked)} if fresh else False
    upstream = [s.key for s in without_parts(dict.fromkeys(u for stage in stages for u in runner.upstream(stage)),
                                             stages) if s not in stages]
    if upstream:
        typer.echo(f"needs {', '.join(upstream)} (reused where done, run where not)", err=True)
    return [runner(stage) for stage in stages]


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"ssrtune {__version__}")
        raise typer.Exit()


@app.callback()
def main(ctx: typer.Context, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
         version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print ssrtune's version and exit.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:
        quiet_libraries()  # their warnings, bars and log dicts; ssrtune's own warnings still show
    ctx.with_resource(command_scope())  # releases what the command claims, and reports disk faults as one line
    ctx.with_resource(resume_notice())


@app.command()
def run(config: ConfigArg, overrides: Overrides = None, fresh: RunFresh = False) -> None:
    """Run the whole chain and print the comparison table: what is done is reused, and a stage whose inputs
    changed is redone, with the stages that depend on it (one line each, saying what changed)."""
    from ssrtune import pipeline

    typer.echo(f"report: {pipeline.run(load_config(config, overrides or []), fresh)}")


@app.command()
def data(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Normalise the task data into the run directory."""
    from ssrtune.stages.data import Data

    [(train_records, test_records)] = _stages(_run(config, overrides, uses_models=False), [Data()], fresh)
    typer.echo(f"{len(train_records)} train, {len(test_records)} test examples")


@app.command()
def generate(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Generate the base model's own answers to the training prompts."""
    from ssrtune.stages.generate import Generate

    runner = _run(config, overrides)
    [generations] = _stages(runner, [Generate()], fresh)
    n_failed = read_json(runner.layout.generation_failures)["n_failed"]
    typer.echo(f"{len(generations)} generations" + (f", {n_failed} failed (rerun to retry them)" if n_failed else ""))


@app.command()
def judge(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Judge the own answers against the gold ones."""
    from ssrtune.judges.base import counts_in_words, verdict_counts
    from ssrtune.stages.judge import Judge

    [judgments] = _stages(_run(config, overrides), [Judge()], fresh)
    typer.echo(f"{len(judgments)} own answers judged: {counts_in_words(verdict_counts(judgments))}")


@app.command()
def restate(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Restate the gold answers for the methods that train on restatements (s3ft's paraphrases, sdft's
    rewrites), and judge them."""
    from ssrtune.judges.base import counts_in_words, verdict_counts
    from ssrtune.methods import Restatement
    from ssrtune.stages.base import trained_methods
    from ssrtune.stages.judge import Judge
    from ssrtune.stages.restate import Restate

    runner = _run(config, overrides)
    restatements = list(dict.fromkeys(s for m in trained_methods(runner.config) for s in m.candidates
                                      if isinstance(s, Restatement)))
    stages = [stage for r in restatements for stage in (Restate(r), Judge(Restate(r)))]
    results = _stages(runner, stages, fresh)
    for restatement, restated, verdicts in zip(restatements, results[::2], results[1::2]):
        typer.echo(f"{restatement.name}: {len(restated)}, judged {counts_in_words(verdict_counts(verdicts))}")
    if not restatements:
        typer.echo("no configured method restates gold answers")


@app.command()
def select(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False) -> None:
    """Build each method's training targets and print the share of each target source."""
    from ssrtune.stages.base import trained_methods
    from ssrtune.stages.select import Select

    runner = _run(config, overrides)
    stages = [Select(m) for m in trained_methods(runner.config)]
    for stage, rows in zip(stages, _stages(runner, stages, fresh)):
        typer.echo(f"{stage.method.name}: {stage.describe(rows)}")


@app.command()
def train(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False,
          full: Annotated[bool, typer.Option("--full", help="Full fine-tuning instead of LoRA; same as "
                                             "train.full=true.")] = False,
          num_processes: Annotated[Optional[int], typer.Option(
              "--num-processes", help="Data-parallel processes (DDP through accelerate); same as "
              "train.num_processes=N.")] = None, model: ModelOption = None) -> None:
    """Fine-tune every configured model (or those named by --model) on its method's selected targets."""
    from ssrtune.stages.train import Train

    extra = (["train.full=true"] if full else []) + ([] if num_processes is None else
                                                      [f"train.num_processes={num_processes}"])
    runner = _run(config, [*(overrides or []), *extra])
    models = _named(runner.config, model)
    for trained, output_dir in zip(models, _stages(runner, [Train(m) for m in models], fresh)):
        typer.echo(f"{trained.name}: {output_dir}")


@app.command()
def evaluate(config: ConfigArg, overrides: Overrides = None, fresh: Fresh = False, model: ModelOption = None
             ) -> None:
    """Evaluate the base model and every trained one (or those named by --model; `base` is the base model, which
    is evaluated in any case, as the reference) on the held-out split and the configured suites."""
    from ssrtune.stages.base import BASE
    from ssrtune.stages.evaluate import Evaluate

    runner = _run(config, overrides)
    trained = [name for name in model or [] if name != BASE]
    stages = [Evaluate(), *(Evaluate(m) for m in (_named(runner.config, trained) if trained or not model else []))]
    asked = [stage for stage in stages if not model or stage.subject in model]
    for stage, result in zip(stages, _stages(runner, stages, fresh, asked)):
        typer.echo(f"{stage.subject}: {stage.describe(result)}")
    typer.echo(f"full tables: ssrtune report {runner.path}")


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
    from ssrtune.judges.audit import run_audit

    runner = _run(config, overrides)
    runner.fresh_stages = {"judge"} if fresh else False  # the audited judges' verdicts, the run's own included
    if labels is not None and against is not None:
        raise typer.BadParameter("give --labels or --against, not both")
    audited = load_judge_config(judge) if judge else runner.config.judge
    reference = labels or (load_judge_config(against) if against else runner.config.judge)
    if reference == audited:
        raise typer.BadParameter("the judge would be compared with itself; give --judge, --labels or --against")
    reference_file = labels or against
    name = name or f"{judge.stem if judge else 'run-judge'}-vs-{reference_file.stem if reference_file else 'run-judge'}"
    json_path, md_path, _ = run_audit(runner, audited, reference, name)
    typer.echo(md_path.read_text(encoding="utf-8"))
    typer.echo(f"audit: {json_path}, {md_path}")


@app.command()
def report(run_dirs: Annotated[list[Path], typer.Argument(exists=True, file_okay=False, help="Run directories.")],
           out: Annotated[Optional[Path], typer.Option(help="Where the report goes (default: the one run).")] = None) -> None:
    """Write report.md and report.html (with figures) for one or more runs and print the tables."""
    from ssrtune.report import write_report

    claim(out or run_dirs[0])  # the folder the report is written to
    typer.echo(f"report: {write_report(run_dirs, out)}")


@app.command()
def export(run_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Run directory.")],
           model: Annotated[str, typer.Argument(help="The trained model to export, by its name, e.g. ssr.")],
           out: Annotated[Path, typer.Option(help="A new folder for the model.")],
           dtype: Annotated[str, typer.Option(help="auto (the base model's precision; full fine-tuning: as "
                                              "trained), float32, bfloat16 or float16.")] = "auto") -> None:
    """Write a trained model as a stand-alone model (LoRA merged in, safetensors, tokenizer, model card)."""
    from ssrtune.export import export as export_model

    typer.echo(f"exported: {export_model(run_dir, model, out, dtype)}")


@app.command()
def doctor(config: Annotated[Optional[Path], typer.Argument(help="A run configuration: also show the engine, "
                                                            "device and precision of each of its stages.",
                                                            exists=True, dir_okay=False)] = None,
           overrides: Overrides = None) -> None:
    """Print the machine, the installed packages and extras, the cache folders and (with CONFIG) how each stage
    would run: the first thing to paste into a bug report."""
    from ssrtune.doctor import report

    typer.echo(report(load_config(config, overrides or []) if config else None, str(config) if config else None))


app.command()(results)  # docs/RESULTS.md from a run directory (its own module: nothing heavy imported here)
app.command()(reproduce)  # the results ledger's driver: ssrtune.ledger.command
app.add_typer(embedded_app, name="embedded")


def entry() -> None:
    """Console script: known user errors print one clear line, not a traceback."""
    try:
        app()
    except (ConfigError, DataError, PromptTooLongError, StaleArtifactError, FileNotFoundError, EndpointError,
            MissingExtraError, ReportError, RunDirInUseError, DiskFaultError, ExportError, UnsupportedRequest,
            GenerationFailed, TrainingProcessError, RecordFileError, UnsafePathError, ChatTemplateError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        sys.exit(2)
