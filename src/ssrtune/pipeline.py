"""The stages of a run, each reading the previous stage's files in the run directory and writing its own.

Every stage is resumable and records a fingerprint of its inputs and settings; `fresh=True` redoes a stage
whose inputs changed instead of refusing to mix old and new results.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
from pathlib import Path

from ssrtune import data as data_mod
from ssrtune import suites
from ssrtune.config import RunConfig, dump_config
from ssrtune.data import Record, load_records, prompt_messages, save_records
from ssrtune.generate import generate
from ssrtune.judge import JudgeInput, build_judge, judge_all, verdict_counts
from ssrtune.models import load_model, load_tokenizer
from ssrtune.select import select_targets, source_shares
from ssrtune.store import RecordFile, StaleArtifactError, fingerprint, read_json, write_json, write_jsonl
from ssrtune.train import train

log = logging.getLogger(__name__)


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def model_fingerprint(config: RunConfig) -> str:
    return fingerprint(config.model.name, config.model.revision)


def prepare_data(config: RunConfig, fresh: bool = False) -> tuple[list[Record], list[Record]]:
    """Normalise the task data into data/train.jsonl and data/test.jsonl (once per data configuration)."""
    folder = config.path / "data"
    meta = folder / "data.meta.json"
    wanted = fingerprint(config.data.model_dump(mode="json"))
    if not fresh and meta.exists() and read_json(meta)["fingerprint"] == wanted:
        return load_records(folder / "train.jsonl"), load_records(folder / "test.jsonl")
    train_records, test_records = data_mod.prepare(config.data)
    save_records(folder / "train.jsonl", train_records)
    save_records(folder / "test.jsonl", test_records)
    write_json(meta, {"fingerprint": wanted, "n_train": len(train_records), "n_test": len(test_records)})
    return train_records, test_records


def generate_stage(config: RunConfig, records: list[Record], fresh: bool = False) -> dict[str, dict]:
    """The base model's own greedy answer to every training prompt: generations.jsonl."""
    out = RecordFile(config.path / "generations.jsonl", fingerprint(
        model_fingerprint(config), file_digest(config.path / "data" / "train.jsonl"),
        config.generate.max_new_tokens, config.generate.engine), fresh=fresh)
    if len(out) < len(records):
        model, tokenizer = load_model(config.model), load_tokenizer(config.model)
        generate(model, tokenizer, {r.id: prompt_messages(r) for r in records}, out, config.generate.batch_size,
                 config.generate.max_new_tokens, config.generate.bf16, description="generate (train prompts)")
    return out.records


def judge_stage(config: RunConfig, records: list[Record], generations: dict[str, dict],
                fresh: bool = False) -> dict[str, dict]:
    """The judge's verdict on every own answer: judgments.jsonl."""
    out = RecordFile(config.path / "judgments.jsonl", fingerprint(
        config.judge.model_dump(mode="json"), file_digest(config.path / "generations.jsonl")), fresh=fresh)
    items = [JudgeInput.of(r, generations[r.id]["response"]) for r in records]
    judgments = judge_all(build_judge(config.judge), items, out)
    log.info("judge verdicts: %s", verdict_counts(judgments))
    return judgments


def select_stage(config: RunConfig, method: str, records: list[Record], generations: dict[str, dict],
                 judgments: dict[str, dict]) -> list[dict]:
    """The training set of `method`: train/<method>.jsonl, and its share of each target source."""
    rows = select_targets(method, records, generations, judgments)
    write_jsonl(config.path / "train" / f"{method}.jsonl", rows)
    stats = {"method": method, "n": len(rows), "shares": source_shares(rows),
             "judge": verdict_counts(judgments) if method != "sft" else None}
    write_json(config.path / "train" / f"{method}.stats.json", stats)
    return rows


def train_stage(config: RunConfig, method: str, rows: list[dict], fresh: bool = False) -> Path:
    """Fine-tune the base model on `rows` into models/<method>/ (skipped when already done with these inputs)."""
    output_dir = config.path / "models" / method
    done_file = output_dir / "ssrtune_train.json"
    wanted = fingerprint(model_fingerprint(config), config.train.model_dump(mode="json"),
                         file_digest(config.path / "train" / f"{method}.jsonl"))
    if fresh and output_dir.exists():
        shutil.rmtree(output_dir)
    marker = output_dir / "ssrtune_fingerprint.json"
    if marker.exists() and read_json(marker)["fingerprint"] != wanted:
        raise StaleArtifactError(f"{output_dir} was trained with other data or settings; rerun with --fresh")
    if done_file.exists():
        return output_dir
    write_json(marker, {"fingerprint": wanted})
    result = train(load_model(config.model), load_tokenizer(config.model), rows, config.train, output_dir)
    write_json(done_file, result)
    return output_dir


def evaluate_stage(config: RunConfig, name: str, records: list[Record], fresh: bool = False) -> dict:
    """Evaluate the base model (`base`) or a trained one on every configured suite: eval/<name>/<suite>.json.

    The model is loaded once, and only if some suite has work left.
    """
    folder = config.path / "eval" / name
    adapter = None if name == "base" else config.path / "models" / name
    model_fp = model_fingerprint(config) if adapter is None else file_digest(adapter / "ssrtune_train.json")
    load = functools.cache(lambda: (load_model(config.model, adapter), load_tokenizer(config.model)))
    test_fp = file_digest(config.path / "data" / "test.jsonl")
    results = {"task": suites.task_suite(config, folder, "task", records, test_fp, model_fp, load, fresh)}
    if config.evaluate.ood:
        ood = suites.ood_records(config)
        results["ood"] = suites.task_suite(config, folder, "ood", ood, suites.records_fingerprint(ood), model_fp, load,
                                           fresh)
    for dataset in config.evaluate.datasets:
        results[dataset.name] = suites.dataset_suite(config, folder, dataset, model_fp, load, fresh)
    if config.evaluate.retention:
        results["retention"] = suites.retention_suite(config, folder, model_fp, load, fresh)
    return results


def run(config: RunConfig, fresh: bool = False) -> Path:
    """The whole SSR chain: data -> own answers -> judge -> targets per method -> train -> evaluate -> report."""
    from ssrtune.report import write_report

    config.path.mkdir(parents=True, exist_ok=True)
    dump_config(config, config.path / "config.yaml")
    train_records, test_records = prepare_data(config, fresh)
    generations = generate_stage(config, train_records, fresh)
    judgments = judge_stage(config, train_records, generations, fresh)
    for method in config.methods:
        rows = select_stage(config, method, train_records, generations, judgments)
        train_stage(config, method, rows, fresh)
    for name in ["base", *config.methods]:
        evaluate_stage(config, name, test_records, fresh)
    return write_report(config.path)
