"""A run directory made from the ledger: every current entry's files (of the shared entry and of one CPU kind's
entries) checked and copied to their places in the run directory, and the task data made there and checked against
the ledger's manifest. The ordinary `Run` then finds those stages current and reuses them; a trained model restored
without weights is finished (its evaluation is reused), and a stage of its that has work left retrains it first
(`driver`)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.inference.lm import LM
from ssrtune.ledger.entries import Entry, LedgerError, read_entry
from ssrtune.ledger.units import SHARED, check_data, data_stages, unit_name
from ssrtune.stages.base import BASE, Run, Stage, trained_models
from ssrtune.stages.evaluate import Evaluate
from ssrtune.stages.evaluated import WeightsAbsentError
from ssrtune.stages.held import Held
from ssrtune.storage.artifacts import StaleArtifactError, write_json
from ssrtune.storage.layout import RunLayout

MANIFEST = "data.json"  # the task data's ids and content hashes, at the ledger's root
CONFIG = "config.yaml"  # the configuration the ledger's results were made with, for people to read


def entry_folder(ledger: Path, kind: str, name: str) -> Path:
    """Where an entry lives: `shared/` (any CPU kind's models train on it), `<kind>/base/`, `<kind>/models/<name>/`."""
    if name == SHARED:
        return ledger / SHARED
    return ledger / kind / (BASE if name == BASE else f"models/{name}")


def ledger_entries(ledger: Path, kind: str) -> dict[str, Entry]:
    """The entries that serve `kind`'s run directory (the shared one and that kind's), read and checked, by name."""
    folders = [ledger / SHARED, ledger / kind / BASE, *sorted((ledger / kind / "models").glob("[!.]*"))]
    entries = {}
    for folder in folders:
        entry = read_entry(folder)
        if entry is not None:
            entries[folder.name] = entry  # shared, base, or the model's name
    return entries


def other_kinds(ledger: Path, kind: str) -> list[str]:
    """The CPU kinds the ledger has a base entry of, but `kind`."""
    return sorted(p.parent.parent.name for p in ledger.glob(f"*/{BASE}/entry.json") if p.parent.parent.name != kind)


def models_elsewhere(ledger: Path, kind: str) -> dict[str, str]:
    """The models whose current entries are of another CPU kind than `kind`: their kind, by model name."""
    found = {}
    for other in other_kinds(ledger, kind):
        for name, entry in ledger_entries(ledger, other).items():
            if name not in (SHARED, BASE) and entry.current:
                found[name] = other
    return found


def restore_ledger(ledger: Path, config: RunConfig, kind: str) -> dict[str, Entry]:
    """Restore the ledger's `kind` results into `config`'s run directory (weightless: a trained model is its result
    and fingerprint files) and return the entries, by name. Files the run directory has are left as they are (its
    own later work, which the Run's fingerprints judge); entries of another `RESULTS_VERSION` are not restored.
    A damaged ledger file, or task data that differs from the manifest, is a `LedgerError` naming the file. Its
    scores are remade by the Run (`restore_results`)."""
    ledger, layout = Path(ledger), RunLayout(config.path)
    entries = ledger_entries(ledger, kind)
    for entry in entries.values():
        if not entry.current:
            continue
        for name in entry.files:
            target = layout.root / name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(entry.folder / name, target)
    runner = Run(config, redo_stale=True)
    for stage in data_stages(config):
        runner(stage)
    if (ledger / MANIFEST).exists():
        check_data(config, ledger / MANIFEST)
    return entries


class WorkNeeded(Exception):
    """A stage that is only to be reused would run a model."""


class NoModels(Held):
    """The models of a run that only reuses: none (asking for one means a stage has work left)."""

    def lm(self, name: str, build: Callable[[], LM]) -> LM:
        raise WorkNeeded(f"evaluating {name} would load the model")


def reuse(config: RunConfig, stages: list[Stage]) -> None:
    """Run `stages` reusing what is current, without a model: a stale stage raises `StaleArtifactError`, one that
    would run a model `WorkNeeded` (or `WeightsAbsentError`); `remade` ones (scores, retention.json) are remade."""
    runner = Run(config)
    runner.held = NoModels()
    for stage in stages:
        runner(stage)


def restore_results(ledger: Path, config: RunConfig, kind: str) -> list[str]:
    """`restore_ledger`, then the scores and retention.json of every evaluation the ledger records for `kind`
    remade from it without loading a model: the run directory a report is written from (`report.write_report`).
    Returns the names of those evaluations (the base model's first), in the configuration's order. An entry not
    current for `config` is a `LedgerError` naming it."""
    entries = restore_ledger(ledger, config, kind)
    recorded = [m for m in [None, *trained_models(config)]
                if unit_name(m) in entries and entries[unit_name(m)].current]
    for model in recorded:
        try:
            reuse(config, [Evaluate(model)])
        except (StaleArtifactError, WorkNeeded, WeightsAbsentError) as err:
            raise LedgerError(f"{entry_folder(ledger, kind, unit_name(model))}: not current for this configuration "
                              f"({err}); `ssrtune reproduce` makes it again") from err
    names = [unit_name(m) for m in recorded]
    write_json(RunLayout(config.path).provenance, {name: provenance(entries[name]) for name in names})
    return names


def provenance(entry: Entry) -> dict[str, str]:
    """What made an entry, as the results' models table shows it: the CPU kind, the commit, the wall time."""
    record, minutes = entry.record, sum(entry.record.get("stage_seconds", {}).values()) / 60
    commit = (record.get("commit") or "unknown")[:10] + (" (dirty)" if record.get("dirty") else "")
    return {"CPU": record["cpu"]["kind"], "commit": commit,
            "minutes, all sessions": f"{minutes or record.get('wall_seconds', 0) / 60:.1f}"}
