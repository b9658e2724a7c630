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
from ssrtune.config import JudgeConfig, RunConfig, dump_config
from ssrtune.data import DataError, Record, load_records, prompt_messages, save_records
from ssrtune.distributed import launch
from ssrtune.endpoint import ChatEndpoint
from ssrtune.generate import generate, generate_openai, generate_vllm
from ssrtune.judge import JudgeInput, build_judge, judge_all, judge_fingerprint, verdict_counts
from ssrtune.models import context_length, load_model, load_tokenizer, resolve
from ssrtune.prompts import fitted_prompts, prompt_fingerprint
from ssrtune.rundir import run_guard
from ssrtune.prompt_templates import PARAPHRASE_TEMPLATE, REWRITE_TEMPLATE, render, template_text
from ssrtune.select import select_targets, source_shares, trained_rows
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


def generate_answers(config: RunConfig, prompts: dict[str, list[dict]], out: RecordFile,
                     description: str) -> dict[str, str]:
    """Greedy answers of the base model to the prompts not yet in `out`, with the configured engine; returns the
    prompts whose endpoint requests failed for good (id -> error)."""
    gen = config.generate
    prompts = {i: p for i, p in prompts.items() if i not in out}
    if not prompts:
        return {}
    description = f"{description} ({gen.engine})"
    if gen.engine == "openai":
        return generate_openai(ChatEndpoint(gen.endpoint), prompts, out, gen.max_new_tokens, description)
    if gen.engine == "vllm":
        generate_vllm(config.model, prompts, out, gen.max_new_tokens, gen.tensor_parallel_size, description)
    else:
        model, tokenizer = load_model(config.model), load_tokenizer(config.model)
        generate(model, tokenizer, prompts, out, gen.batch_size, gen.max_new_tokens, gen.bf16, description)
    return {}


def generate_stage(config: RunConfig, records: list[Record], fresh: bool = False) -> dict[str, dict]:
    """The base model's own greedy answer to every training prompt: generations.jsonl.

    With the openai engine a prompt whose request failed for good gets no generation (its example trains on
    gold); generations.failures.json lists them, and rerunning the stage retries exactly those.
    """
    out = RecordFile(config.path / "generations.jsonl", generations_fingerprint(config), fresh=fresh)
    failures: dict[str, str] = {}
    if len(out) < len(records):
        if config.generate.engine == "openai":
            # The server's tokenizer is not ours to count with: it gets the whole prompt and enforces its own limit.
            prompts = {r.id: prompt_messages(r) for r in records}
        else:
            prompts = fitted_prompts(config, "generate", records, load_tokenizer(config.model),
                                     context_length(config.model), reserve=config.generate.max_new_tokens)
        failures = generate_answers(config, prompts, out, "generate train prompts")
    write_json(config.path / "generations.failures.json", {"n_failed": len(failures), "failures": failures})
    if failures:
        log.warning("%d of %d prompts got no answer from the endpoint (first: %s); their examples use the gold "
                    "answer, and rerunning retries them", len(failures), len(records), next(iter(failures.values())))
    return out.records


def artifact_fingerprint(path: Path) -> str:
    """The settings fingerprint a `RecordFile` was written under: stable while the file grows by resuming."""
    return read_json(path.with_name(path.name + ".meta.json"))["fingerprint"]


def judge_candidates(config: RunConfig, judge: JudgeConfig, records: list[Record], candidates_file: Path,
                     out_path: Path, fresh: bool = False) -> dict[str, dict]:
    """Judge the candidate answers of the RecordFile `candidates_file`, as they are on disk, against the gold.

    The verdicts are cached in `out_path` under a fingerprint of the judge (settings and prompt templates), the
    task data and the candidates' settings: rerunning costs nothing, and a changed template or input is caught
    (an answer changed under its verdict too, by the answer hash each verdict keeps).
    """
    out = RecordFile(out_path, fingerprint(judge_fingerprint(judge), file_digest(config.path / "data" / "train.jsonl"),
                                           artifact_fingerprint(candidates_file)), fresh=fresh)
    candidates = RecordFile(candidates_file, artifact_fingerprint(candidates_file)).records
    items = [JudgeInput.of(r, candidates[r.id]["response"]) for r in records if r.id in candidates]
    judgments = judge_all(build_judge(judge), items, out)
    log.info("%s: %s", out_path.name, verdict_counts(judgments))
    return judgments


def judge_stage(config: RunConfig, records: list[Record], generations: dict[str, dict],
                fresh: bool = False) -> dict[str, dict]:
    """The judge's verdict on every own answer: judgments.jsonl.

    Keyed to the generation settings rather than to the generations file: that file only ever grows under one
    fingerprint, so a verdict stays valid when a resumed generation adds the answers that failed before. An
    example without an own answer gets no verdict. The answers judged are those of generations.jsonl on disk
    (which `generations`, kept in the signature for its callers, mirrors).
    """
    return judge_candidates(config, config.judge, records, config.path / "generations.jsonl",
                            config.path / "judgments.jsonl", fresh)


RESTATEMENTS = {  # method -> (artifact name, shipped template, the GenerateConfig key of the user's template)
    "s3ft": ("paraphrases", PARAPHRASE_TEMPLATE, "paraphrase_template"),
    "sdft": ("rewrites", REWRITE_TEMPLATE, "rewrite_template"),
}
# Tokens kept free for a restating template's own wording, beside the task prompt, the gold answer and the reply.
TEMPLATE_RESERVE = 128


def restate_stage(config: RunConfig, method: str, records: list[Record], judgments: dict[str, dict],
                  fresh: bool = False) -> tuple[dict[str, dict], dict[str, dict]]:
    """The base model's restatements of the gold answers and the judge's verdicts on them.

    s3ft paraphrases the gold answer where the own answer was not accepted (paraphrases.jsonl); sdft rewrites
    every gold answer (rewrites.jsonl). Both are judged like own answers (<name>.judgments.jsonl).
    """
    name, default, template_key = RESTATEMENTS[method]
    template = template_text(getattr(config.generate, template_key), default)
    wanted = [r for r in records if method == "sdft" or judgments.get(r.id, {}).get("verdict") != "accept"]
    path = config.path / f"{name}.jsonl"
    out = RecordFile(path, fingerprint(generations_fingerprint(config), template), fresh=fresh)
    todo = [r for r in wanted if r.id not in out]
    if config.generate.engine == "openai" or not todo:
        task_prompts = {r.id: prompt_messages(r) for r in todo}
    else:  # the task prompt, its document cut by the one truncation rule so that the whole request fits
        task_prompts = fitted_prompts(config, name, todo, load_tokenizer(config.model), context_length(config.model),
                                      targets={r.id: r.response for r in todo},
                                      reserve=config.generate.max_new_tokens + TEMPLATE_RESERVE)
    prompts = {r.id: [{"role": "user", "content": render(
        template, instruction="\n\n".join(m["content"] for m in task_prompts[r.id]), query=r.query,
        context=r.context or "", gold=r.response)}] for r in todo}
    failures = generate_answers(config, prompts, out, f"{method}: {name}")
    if failures:
        log.warning("%s: %d prompts got no answer from the endpoint; their examples use gold", name, len(failures))
    verdicts = judge_candidates(config, config.judge, records, path, config.path / f"{name}.judgments.jsonl", fresh)
    return out.records, verdicts


def select_stage(config: RunConfig, method: str, records: list[Record], generations: dict[str, dict],
                 judgments: dict[str, dict], fresh: bool = False) -> list[dict]:
    """The training set of `method`: train/<method>.jsonl (dropped examples included, with no target), and its
    share of each target source."""
    restated, restated_judgments = (restate_stage(config, method, records, judgments, fresh)
                                    if method in RESTATEMENTS else ({}, {}))
    rows = select_targets(method, records, generations, judgments, restated, restated_judgments)
    # The prompts are cut here, where the targets are known, so train/<method>.jsonl is exactly what is trained on.
    by_id = {r.id: r for r in records}
    limit = min(config.train.max_length, context_length(config.model))
    kept = trained_rows(rows)
    prompts = fitted_prompts(config, f"train/{method}", [by_id[row["id"]] for row in kept],
                             load_tokenizer(config.model), limit, targets={row["id"]: row["target"] for row in kept})
    for row in kept:
        row["messages"] = prompts[row["id"]]
    write_jsonl(config.path / "train" / f"{method}.jsonl", rows)
    stats = {"method": method, "n": len(rows), "shares": source_shares(rows),
             "judge": verdict_counts(judgments) if method != "sft" else None,
             "judge_restated": verdict_counts(restated_judgments) if restated_judgments else None}
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
    kept = trained_rows(rows)
    if not kept:
        raise DataError(config.path / "train" / f"{method}.jsonl", None, None,
                        "every example was dropped (the judge accepted no own answer): nothing to train on")
    write_json(marker, {"fingerprint": wanted})
    if config.train.num_processes > 1:
        result = launch(config, config.path / "train" / f"{method}.jsonl", output_dir)
    else:
        result = train(load_model(config.model), load_tokenizer(config.model), kept, config.train, output_dir)
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

    with run_guard(config.path):  # one writer per run; a full or read-only disk ends as one DiskFaultError
        dump_config(config, config.path / "config.yaml")
        train_records, test_records = prepare_data(config, fresh)
        generations = generate_stage(config, train_records, fresh)
        judgments = judge_stage(config, train_records, generations, fresh)
        for method in config.methods:
            rows = select_stage(config, method, train_records, generations, judgments, fresh)
            train_stage(config, method, rows, fresh)
        for name in ["base", *config.methods]:
            evaluate_stage(config, name, test_records, fresh)
        return write_report(config.path)
