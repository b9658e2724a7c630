"""What the ledger keeps of a run directory, found from the stages themselves (so a new suite, benchmark or method
is kept without naming it here): a unit is what the driver runs at once (the base unit: the task data, every
method's targets, with the candidates and verdicts they are made from, and the base model's evaluation; a model's
unit: its training and evaluation), and its files go to the entries that own them. Kept: the record files of
`records` stages and the files of `whole` ones, with their fingerprint sidecars; of a training, only its result and
fingerprint (no weights). Left out: what is remade (targets, scores, reports: some hold the datasets' text) and the
task data, of which the manifest keeps ids and hashes."""

from __future__ import annotations

from pathlib import Path

from ssrtune.config.run import RunConfig
from ssrtune.ledger.entries import LedgerError, record_hash
from ssrtune.stages.base import BASE, Stage, TrainedModel, plan_closure, trained_methods
from ssrtune.stages.data import Data
from ssrtune.stages.evaluate import Evaluate
from ssrtune.stages.select import Select
from ssrtune.stages.train import Train
from ssrtune.storage.artifacts import iter_jsonl, read_json
from ssrtune.storage.layout import RunLayout
from ssrtune.storage.timings import Timings

SHARED = "shared"  # the entry of the candidates and verdicts every model's targets are made from, on any CPU kind


def unit_stages(config: RunConfig, model: TrainedModel | None) -> list[Stage]:
    """The stages of a unit: the base unit's (model None), as `pipeline.plan` orders them, or a model's."""
    if model is None:
        return [Data(), *(Select(method) for method in trained_methods(config)), Evaluate()]
    return [Train(model), Evaluate(model)]


def owner(stage: Stage) -> str:
    """The entry a stage's files belong to: a model's name, `base`, or `shared`."""
    return stage.subject if stage.name in ("train", "evaluate") else SHARED


def kept_files(stage: Stage, layout: RunLayout) -> list[Path]:
    """The files of `stage` the ledger keeps (see the module docstring)."""
    if stage.kind == "remade":
        return []
    if isinstance(stage, Train):
        return [layout.trained(stage.model.name), stage.sidecar(layout)]
    path = stage.artifact(layout)
    if not path.is_relative_to(layout.root) or path.is_relative_to(layout.data) or path.is_dir():
        return []  # a user's eval set, the task data (the manifest), a folder (none but a training's)
    sidecar = path.with_name(path.name + ".meta.json") if stage.kind == "records" else stage.sidecar(layout)
    return [path, sidecar]


def unit_files(config: RunConfig, model: TrainedModel | None) -> dict[str, list[str]]:
    """The files of a unit's stages and of the stages they need, by the entry that owns them (paths relative to the
    run directory); a model's entry also keeps its method's target shares (train/<method>.stats.json)."""
    layout, files = RunLayout(config.path), {}
    for stage in plan_closure(unit_stages(config, model), config):
        for path in kept_files(stage, layout):
            files.setdefault(owner(stage), []).append(path.relative_to(layout.root).as_posix())
    if model is not None:
        stats = layout.target_stats(model.method.name).relative_to(layout.root).as_posix()
        files.setdefault(model.name, []).append(stats)
    return {name: list(dict.fromkeys(paths)) for name, paths in files.items()}


def stage_seconds(config: RunConfig, model: TrainedModel | None) -> dict[str, dict[str, float]]:
    """Per entry of a unit, the wall time of each of its stages in this run directory, every session added
    (timings.json): the work earlier commands did counts too, where the driver's own clock saw only a reuse."""
    timings, seconds = Timings(config.path).entries, {}
    for stage in plan_closure(unit_stages(config, model), config):
        if stage.key in timings:
            seconds.setdefault(owner(stage), {})[stage.key] = round(timings[stage.key]["seconds"], 1)
    return seconds


def data_stages(config: RunConfig) -> list[Stage]:
    """The stages that make the task data (data/): deterministic, remade on any machine from the configuration."""
    layout = RunLayout(config.path)
    stages = plan_closure(unit_stages(config, None), config)
    return [s for s in stages if s.kind == "whole" and s.artifact(layout).is_relative_to(layout.data)]


def data_manifest(config: RunConfig) -> dict:
    """The task data as ids and content hashes, under the fingerprints of the data stages that made it."""
    layout = RunLayout(config.path)
    return {"fingerprints": {s.sidecar(layout).relative_to(layout.root).as_posix(): read_json(s.sidecar(layout))[
                "fingerprint"] for s in data_stages(config)},
            "records": {path.relative_to(layout.root).as_posix(): {r["id"]: record_hash(r) for r in iter_jsonl(path)}
                        for path in sorted(layout.data.glob("*.jsonl"))}}


def check_data(config: RunConfig, manifest_path: Path) -> None:
    """The task data made here against the ledger's manifest, where it was made from the same inputs (the same
    data stages' fingerprints): a record that differs is an error naming the file and the record."""
    manifest, made = read_json(manifest_path), data_manifest(config)
    if manifest.get("fingerprints") != made["fingerprints"]:
        return  # other settings: every entry made from the old data is stale, and the Run redoes it
    for name, records in manifest["records"].items():
        got = made["records"].get(name, {})
        differ = sorted(set(records) ^ set(got)) + sorted(i for i in set(records) & set(got) if records[i] != got[i])
        if differ:
            raise LedgerError(f"{RunLayout(config.path).root / name}: {len(differ)} records differ from the ledger's "
                              f"manifest {manifest_path} (first: id {differ[0]!r}); the task data is not what "
                              "the ledger's results were made from")


def differing_answers(entry_files: dict[str, Path], root: Path) -> dict[str, int]:
    """For every answers file of another CPU kind's base entry (`entry_files`: run-directory path -> the file in the
    ledger), how many answers this run's base model gives otherwise (by id)."""
    counts = {}
    for name, theirs in entry_files.items():
        if name.endswith(".jsonl") and (root / name).exists() and "response" in next(iter_jsonl(theirs), {}):
            ours = {r["id"]: r.get("response") for r in iter_jsonl(root / name)}
            counts[name] = sum(ours.get(r["id"]) != r.get("response") for r in iter_jsonl(theirs))
    return counts


def unit_name(model: TrainedModel | None) -> str:
    return BASE if model is None else model.name
