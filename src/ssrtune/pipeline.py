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
from ssrtune.distributed import launch
from ssrtune.endpoint import ChatEndpoint
from ssrtune.generate import generate, generate_openai, generate_vllm
from ssrtune.judge import REFUSAL_PATTERNS, JudgeInput, build_judge, judge_all, verdict_counts
from ssrtune.models import context_length, load_model, load_tokenizer, resolve
from ssrtune.prompts import fitted_prompts, prompt_fingerprint
from ssrtune.select import select_targets, source_shares
from ssrtune.store import RecordFile, StaleArtifactError, fingerprint, read_json, write_json, write_jsonl
from ssrtune.train import train

log = logging.getLogger(__name__)


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def model_fingerprint(config: RunConfig) -> str:
    """The model's identity: name and revision, and for a local folder its configuration, tokenizer and chat
    template files (hashed) and the names and sizes of its weight files (hashing gigabytes of weights at every
    stage would cost more than it protects; a retrained folder of the same shapes keeps its fingerprint)."""
    folder = Path(resolve(config.model.name))
    files = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file():
                small = path.suffix in (".json", ".jinja", ".txt", ".model") and path.stat().st_size < 50_000_000
                files[path.name] = file_digest(path) if small else path.stat().st_size
    return fingerprint(config.model.name, config.model.revision, files)


def prepare_data(config: RunConfig, fresh: bool = False) -> tuple[list[Record], list[Record]]:
    """Normalise the task data into data/train.jsonl and data/test.jsonl (once per data configuration and files)."""
    folder = config.path / "data"
    meta = folder / "data.meta.json"
    inputs = [Path(f) for f in (config.data.train_file, config.data.test_file) if f and config.data.recipe is None]
    wanted = fingerprint(config.data.model_dump(mode="json"),
                         [file_digest(f) if f.is_file() else str(f) for f in inputs if f.exists()])
    if not fresh and meta.exists() and read_json(meta)["fingerprint"] == wanted:
        return load_records(folder / "train.jsonl"), load_records(folder / "test.jsonl")
    skipped: dict[str, list] = {}
    train_records, test_records = data_mod.prepare(config.data, skipped)
    for split, errors in skipped.items():
        if errors:
            log.warning("data: skipped %d bad %s row(s) (data.on_error: skip); first: %s", len(errors), split,
                        errors[0])
    save_records(folder / "train.jsonl", train_records)
    save_records(folder / "test.jsonl", test_records)
    write_json(meta, {"fingerprint": wanted, "n_train": len(train_records), "n_test": len(test_records),
                      "skipped": {split: [str(e) for e in errors] for split, errors in skipped.items()}})
    return train_records, test_records


def generations_fingerprint(config: RunConfig) -> str:
    gen = config.generate
    return fingerprint(model_fingerprint(config), prompt_fingerprint(config),
                       file_digest(config.path / "data" / "train.jsonl"), gen.max_new_tokens, gen.engine,
                       *([gen.endpoint.model] if gen.endpoint else []))


def generate_stage(config: RunConfig, records: list[Record], fresh: bool = False) -> dict[str, dict]:
    """The base model's own greedy answer to every training prompt: generations.jsonl.

    With the openai engine a prompt whose request failed for good gets no generation (its example trains on
    gold); generations.failures.json lists them, and rerunning the stage retries exactly those.
    """
    gen = config.generate
    out = RecordFile(config.path / "generations.jsonl", generations_fingerprint(config), fresh=fresh)
    failures: dict[str, str] = {}
    if len(out) < len(records):
        description = f"generate (train prompts, {gen.engine})"
        if gen.engine == "openai":
            # The server's tokenizer is not ours to count with: it gets the whole prompt and enforces its own limit.
            prompts = {r.id: prompt_messages(r) for r in records}
            failures = generate_openai(ChatEndpoint(gen.endpoint), prompts, out, gen.max_new_tokens, description)
        else:
            tokenizer = load_tokenizer(config.model)
            prompts = fitted_prompts(config, "generate", records, tokenizer, context_length(config.model),
                                     reserve=gen.max_new_tokens)
            if gen.engine == "vllm":
                generate_vllm(config.model, prompts, out, gen.max_new_tokens, gen.tensor_parallel_size, description)
            else:
                generate(load_model(config.model), tokenizer, prompts, out, gen.batch_size, gen.max_new_tokens,
                         gen.bf16, description)
    write_json(config.path / "generations.failures.json", {"n_failed": len(failures), "failures": failures})
    if failures:
        log.warning("%d of %d prompts got no answer from the endpoint (first: %s); their examples use the gold "
                    "answer, and rerunning retries them", len(failures), len(records), next(iter(failures.values())))
    return out.records


def judge_stage(config: RunConfig, records: list[Record], generations: dict[str, dict],
                fresh: bool = False) -> dict[str, dict]:
    """The judge's verdict on every own answer: judgments.jsonl.

    Keyed to the generation settings rather than to the generations file: that file only ever grows under one
    fingerprint, so a verdict stays valid when a resumed generation adds the answers that failed before. An
    example without an own answer gets no verdict.
    """
    out = RecordFile(config.path / "judgments.jsonl", fingerprint(
        config.judge.model_dump(mode="json"), REFUSAL_PATTERNS, file_digest(config.path / "data" / "train.jsonl"),
        generations_fingerprint(config)), fresh=fresh)
    items = [JudgeInput.of(r, generations[r.id]["response"]) for r in records if r.id in generations]
    judgments = judge_all(build_judge(config.judge), items, out)
    log.info("judge verdicts: %s", verdict_counts(judgments))
    return judgments


def select_stage(config: RunConfig, method: str, records: list[Record], generations: dict[str, dict],
                 judgments: dict[str, dict]) -> list[dict]:
    """The training set of `method`: train/<method>.jsonl, and its share of each target source."""
    rows = select_targets(method, records, generations, judgments)
    # The prompts are cut here, where the targets are known, so train/<method>.jsonl is exactly what is trained on.
    by_id = {r.id: r for r in records}
    limit = min(config.train.max_length, context_length(config.model))
    prompts = fitted_prompts(config, f"train/{method}", [by_id[row["id"]] for row in rows],
                             load_tokenizer(config.model), limit, targets={row["id"]: row["target"] for row in rows})
    for row in rows:
        row["messages"] = prompts[row["id"]]
    write_jsonl(config.path / "train" / f"{method}.jsonl", rows)
    stats = {"method": method, "n": len(rows), "shares": source_shares(rows),
             "judge": verdict_counts(judgments) if method != "sft" else None}
    write_json(config.path / "train" / f"{method}.stats.json", stats)
    return rows


def train_stage(config: RunConfig, method: str, rows: list[dict], fresh: bool = False) -> Path:
    """Fine-tune the base model on `rows` into models/<method>/ (skipped when already done with these inputs)."""
    output_dir = config.path / "models" / method
    done_file = output_dir / "ssrtune_train.json"
    # The number of processes splits the same global batch, so it does not change what is trained.
    wanted = fingerprint(model_fingerprint(config),
                         config.train.model_dump(mode="json", exclude={"num_processes", "accelerate_config"}),
                         file_digest(config.path / "train" / f"{method}.jsonl"))
    if fresh and output_dir.exists():
        shutil.rmtree(output_dir)
    marker = output_dir / "ssrtune_fingerprint.json"
    if marker.exists() and read_json(marker)["fingerprint"] != wanted:
        raise StaleArtifactError(f"{output_dir} was trained with other data or settings; rerun with --fresh")
    if done_file.exists():
        return output_dir
    write_json(marker, {"fingerprint": wanted})
    if config.train.num_processes > 1:
        result = launch(config, config.path / "train" / f"{method}.jsonl", output_dir)
    else:
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
