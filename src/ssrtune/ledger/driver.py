"""`ssrtune reproduce`: a long experiment continued from its ledger, unit by unit, under a time budget.

The ledger is restored into this CPU kind's run directory (`restore`); then the base unit (the shared candidates
and verdicts, the base model's evaluation) and each configured model in order: a unit whose entries are current
(this `RESULTS_VERSION`, every file in place, and the Run reusing all of its stages without a model: `_probe`) is
skipped; another is run by the ordinary Run (stale stages redone, saying why) and its entries written at once, so a
kill loses at most the unit in progress. Before a unit with work, the run stops cleanly where the minutes spent and
the last model's wall time would pass the budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ssrtune.config.errors import ConfigError
from ssrtune.config.run import RunConfig
from ssrtune.ledger.entries import Entry, commit, cpu_kind, read_entry, same_files, write_entry
from ssrtune.ledger.restore import (CONFIG, MANIFEST, WorkNeeded, entry_folder, models_elsewhere, other_kinds,
                                    restore_ledger, reuse)
from ssrtune.ledger.units import (SHARED, data_manifest, differing_answers, owner, stage_seconds, unit_files, unit_name,
                                  unit_stages)
from ssrtune.stages.base import BASE, Run, TrainedModel, plan_closure, trained_models
from ssrtune.stages.evaluated import WeightsAbsentError, has_weights
from ssrtune.stages.report import Report
from ssrtune.storage.artifacts import StaleArtifactError, read_json, write_json, write_text_atomic
from ssrtune.storage.layout import RunLayout
from ssrtune.storage.rundir import run_guard


def reproduce(config: RunConfig, ledger: Path, budget_minutes: float | None = None,
              say: Callable[[str], None] = print) -> int:
    """Continue the experiment of `config` from `ledger` in this CPU kind's run directory (`config.path`); returns
    how many rows (the base unit, models) are left: 0 once every model is recorded (the report is then written where
    this kind recorded them all)."""
    if config.model.dtype == "auto":
        raise ConfigError("model.dtype is auto: a ledger's rows from different machines must share one precision; "
                          "set model.dtype (float32 runs alike on AVX2 and AVX512 CPUs)")
    start, kind, ledger = time.monotonic(), cpu_kind(), Path(ledger)
    commit()  # what every entry this process writes records: the checkout it started from
    models = trained_models(config)
    with run_guard(config.path):
        entries, elsewhere = restore_ledger(ledger, config, kind), models_elsewhere(ledger, kind)
        # each seed's models are trained and evaluated on one CPU kind, and compared with that kind's base model
        taken = {model.train_settings(config).seed: elsewhere[model.name] for model in models
                 if model.name in elsewhere}
        here = [m for m in models if m.name not in elsewhere and m.train_settings(config).seed not in taken]
        last_wall = max(((e.record["finished"], e.record.get("wall_seconds", 0)) for name, e in entries.items()
                         if name not in (SHARED, BASE) and e.current), default=(None, None))[1]
        units = [None, *here] if here or _recorded(BASE, entries) else []
        waiting = [m.name for m in models if m not in here and m.name not in elsewhere]
        if waiting:
            kinds = " and ".join(sorted(set(taken.values())))
            say(f"[reproduce] {', '.join(waiting)}: left to a machine of another CPU kind ({kinds}), where the other "
                "models of their seed were trained")
        for index, model in enumerate(units):
            name = unit_name(model)
            if _done(config, model, entries):
                say(f"[reproduce] {name}: current in the ledger, reused")
                continue
            spent = time.monotonic() - start
            if budget_minutes is not None and last_wall is not None and spent + last_wall > budget_minutes * 60:
                left = len(waiting) + 1 + sum(not _recorded(unit_name(m), entries) for m in units[index + 1:])
                say(f"[reproduce] stopped within the budget of {budget_minutes:g} min ({spent / 60:.1f} spent, the "
                    f"last model took {last_wall / 60:.1f}): {left} rows left; `make reproduce` continues")
                return left
            wall = _run_unit(config, model, entries)
            entries.update(_export(config, ledger, kind, model, wall))
            say(f"[reproduce] {name}: done in {wall / 60:.1f} min, recorded in {entry_folder(ledger, kind, name)}")
            if model is not None:
                last_wall = entries[name].record["wall_seconds"] if name in entries else wall
        if not waiting and not elsewhere:
            Run(config, redo_stale=True)(Report())
    return len(waiting)


def _recorded(name: str, entries: dict[str, Entry]) -> bool:
    return name in entries and entries[name].current


def _done(config: RunConfig, model: TrainedModel | None, entries: dict[str, Entry]) -> bool:
    """Whether the unit's entries are current and the Run reuses every stage of the unit without running a model,
    leaving the unit's own files as its entries hold them (a stage redone without a model, say verdicts under
    another judge, is work to record)."""
    files = unit_files(config, model)
    if not all(_recorded(name, entries) for name in files):
        return False
    if not all((config.path / name).exists() for names in files.values() for name in names):
        return False
    return _probe(config, model) and all(same_files(entries[name], config.path, files[name])
                                         for name in _own(model) if name in files)


def _own(model: TrainedModel | None) -> tuple[str, ...]:
    """The entries a unit writes: the base unit's, the shared one and the base model's; a model's, its own."""
    return (SHARED, BASE) if model is None else (model.name,)


def _probe(config: RunConfig, model: TrainedModel | None) -> bool:
    try:
        reuse(config, unit_stages(config, model))
    except (StaleArtifactError, WorkNeeded, WeightsAbsentError):
        return False
    return True


def _run_unit(config: RunConfig, model: TrainedModel | None, entries: dict[str, Entry]) -> float:
    """Run a unit's stages (reused where current, redone where stale) and return its wall time. Stages whose entry
    is of another results version are made again; so is a training restored without weights whose evaluation has
    work left."""
    layout, stages = RunLayout(config.path), unit_stages(config, model)
    fresh = {stage.key for stage in plan_closure(stages, config) if stage.kind != "remade" and
             owner(stage) in entries and not entries[owner(stage)].current}
    if model is not None and layout.trained(model.name).exists() and not has_weights(layout.model_folder(model.name)):
        fresh.add(f"train/{model.name}")
    start = time.monotonic()
    runner = Run(config, fresh or False, redo_stale=True)
    for stage in stages:
        runner(stage)
    return time.monotonic() - start


def _export(config: RunConfig, ledger: Path, kind: str, model: TrainedModel | None, wall: float) -> dict[str, Entry]:
    """Write the unit's own entries whose files changed (the shared one when a new method brought new candidates),
    the data manifest and the configuration where they changed; returns the entries written, by name."""
    root, written, seconds = config.path, {}, stage_seconds(config, model)
    for name, files in unit_files(config, model).items():
        folder = entry_folder(ledger, kind, name)
        if name not in _own(model):  # the base model's KL reference, in a model's unit: the base entry's
            continue
        previous = read_entry(folder)
        if same_files(previous, root, files):
            continue
        # the entry's wall time: all the work that made it
        total = wall + (previous.record.get("wall_seconds", 0) if previous is not None and previous.current else 0)
        extra = {"stage_seconds": seconds.get(name, {})}
        if name == BASE:  # the first base of a CPU kind: how many of its answers differ from the other kinds' bases
            extra["answers_differ"] = {other: differing_answers(
                {f: entry_folder(ledger, other, BASE) / f for f in read_entry(entry_folder(ledger, other, BASE)).files},
                root) for other in other_kinds(ledger, kind)}
        written[name] = write_entry(folder, root, files, kind=kind, dtype=config.model.dtype,
                                    wall_seconds=round(total, 1), **extra)
    manifest, settings = data_manifest(config), RunLayout(root).config.read_text(encoding="utf-8")
    if not (ledger / MANIFEST).exists() or read_json(ledger / MANIFEST) != manifest:
        write_json(ledger / MANIFEST, manifest)
    if not (ledger / kind / CONFIG).exists() or (ledger / kind / CONFIG).read_text(encoding="utf-8") != settings:
        write_text_atomic(ledger / kind / CONFIG, settings)
    return written
