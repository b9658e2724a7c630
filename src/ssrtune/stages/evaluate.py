"""Evaluation of one model (base or fine-tuned) on every configured suite, each written to eval/<model>/.

Suites: `task` (the held-out split), `ood` (conversational grounded QA from CoQA) and one per user dataset, each
judged against its gold answers (with the paper's grounded-QA metrics where the data has unanswerable examples),
and `retention` (benchmarks and drift from the base model). Every
suite records a fingerprint of its model and settings and is skipped when already done with them; answers are
appended as they come, so an interrupted evaluation resumes.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from ssrtune.evaluation import benchmarks as bench
from ssrtune.evaluation import retention
from ssrtune.config.run import RunConfig
from ssrtune.data.loaders import load_records
from ssrtune.data.prompts import prompt_part
from ssrtune.data.schema import Record
from ssrtune.storage.fingerprints import Digest, Parts, file_digest, fingerprint
from ssrtune.inference.factory import stage_engine_identity, stage_lm
from ssrtune.inference.generation import generate_into
from ssrtune.inference.harness import harness_results
from ssrtune.inference.lm import LM, GenerationFailed
from ssrtune.judges.base import Judge, JudgeInput
from ssrtune.config.judges import JudgeConfig, describe
from ssrtune.judges.factory import build_judge, judge_fingerprint, judge_part
from ssrtune.models.loading import model_part
from ssrtune.evaluation.qa_metrics import has_unanswerable, judged_rows, task_metrics
from ssrtune.stages.base import BASE, Inputs, Stage, TrainedModel
from ssrtune.stages.data import Data, OodData
from ssrtune.stages.generate import task_prompts
from ssrtune.stages.judge import judge_all
from ssrtune.stages.train import Train
from ssrtune.storage.layout import RunLayout
from ssrtune.evaluation.stats import Z95
from ssrtune.storage.artifacts import CacheRule, RecordFile, read_json, recorded_fingerprint, write_json, write_jsonl

LoadLM = Callable[[], LM]  # the model under evaluation behind `evaluate.engine`, built on first use


@dataclass(frozen=True, eq=False)
class Evaluate(Stage):
    """Inputs: the base model's, or the trained model's result file (ssrtune_train.json), and the engine, with each
    suite's settings. Artifact: eval/<name>/ (per suite: answers, scores, metrics). Resume: a suite's answers are
    appended as they come; under other inputs they are redone or refused by the run's rule (`Run.rule`), and the
    verdicts on them are judged again when the judge or the answers changed; retention benchmarks are redone
    one by one when their settings changed. The model is loaded once, and only if some suite has work left; it
    answers every suite and is released before any judge loads a model of its own (two vLLM engines don't fit one
    GPU); every result's fingerprint holds the engine and the precision it ran in."""

    model: TrainedModel | None = None  # None: the base model
    name = "evaluate"

    @property
    def subject(self) -> str:
        return BASE if self.model is None else self.model.name  # the base model has no TrainedModel

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        # a trained model's KL is measured against the base model's responses, written by the base's evaluation
        kl = self.model is not None and config.evaluate.retention and config.evaluate.retention.kl_prompts
        return {"data": Data(), **({"model": Train(self.model)} if self.model else {}),
                **({"ood": OodData()} if config.evaluate.ood else {}), **({"base": Evaluate()} if kl else {})}

    def artifact(self, layout: RunLayout) -> Path:
        return layout.evaluation(self.subject)

    def evaluated_model(self, config: RunConfig, layout: RunLayout) -> Parts:
        """The model under evaluation (the base model, or the trained one by its result file) and its engine."""
        model = ({"model": model_part(config.model)} if self.model is None else
                 {f"models/{self.model.name}": Digest(file_digest(layout.trained(self.model.name)))})
        engine = stage_engine_identity(config, config.evaluate)
        return {"evaluated model": Digest(fingerprint(*model.values(), engine), {**model, "evaluate.engine": engine})}

    def make(self, inputs: Inputs) -> dict:
        config, layout, rule = inputs.config, inputs.layout, inputs.rule
        folder = self.artifact(layout)
        adapter = None if self.model is None else layout.model(self.model.name)
        model = self.evaluated_model(config, layout)
        load = functools.cache(lambda: stage_lm(config, config.evaluate, adapter))
        _, test_records = inputs["data"]
        judge = config.task_judge, "evaluate.judge" if config.evaluate.judge else "judge"  # and where it is set
        suites = [("task", test_records, {"data/test.jsonl": Digest(file_digest(layout.test_records))}, judge)]
        if config.evaluate.ood:
            ood = inputs["ood"]
            suites.append(("ood", ood, {"data/ood.jsonl": Digest(records_fingerprint(ood))},
                           (config.evaluate.ood.judge, "evaluate.ood.judge") if config.evaluate.ood.judge else judge))
        for dataset in config.evaluate.datasets:
            records = load_records(dataset.file, dataset.fields, format=dataset.format)
            data = {f"the records of {dataset.file}": Digest(records_fingerprint(records))}
            suites.append((dataset.name, records, data,
                           (dataset.judge, f"evaluate.datasets.{dataset.name}.judge") if dataset.judge else judge))
        # The model answers every suite first; its memory goes back before any judge loads a model of its own (an
        # llm judge's vLLM engine would not start beside the evaluated model's).
        try:
            predictions = {suite: answers(config, folder, suite_file(suite), records, model, data, load, rule,
                                          f"evaluate {folder.name} ({suite})")
                           for suite, records, data, _ in suites}
            retained = (retention_suite(config, folder, model["evaluated model"], load, rule.fresh)
                        if config.evaluate.retention else None)
        finally:
            if load.cache_info().currsize:
                load().close()
        with Judges() as judges:
            results = {suite: judged_suite(folder, suite, records, predictions[suite], rule, judges, spec)
                       for suite, records, _, spec in suites}
        return results if retained is None else {**results, "retention": retained}

    def describe(self, result: dict) -> str:
        """`task accuracy 0.450; ood accuracy 0.300; hellaswag acc_norm 0.412, KL from base 0.0123`."""
        return "; ".join(headline(suite, r) for suite, r in result.items())


def headline(suite: str, result: dict) -> str:
    if suite != "retention":  # a judged suite
        low, high = result["accuracy_ci95"]
        failed = result["verdicts"]["failed"]
        return (f"{suite} accuracy {result['accuracy']:.3f} [{low:.3f}, {high:.3f}]"
                + (f" ({failed} failed verdicts)" if failed else ""))
    scores = [f"{name} {r['primary']} {r[r['primary']]['value']:.3f}" for name, r in result["benchmarks"].items()]
    kl = result.get("kl", {}).get("mean_kl")
    return ", ".join(scores + ([f"KL from base {kl:.4f}"] if kl is not None else []))


def records_fingerprint(records: list[Record]) -> str:
    return fingerprint([r.model_dump(mode="json") for r in records])


def answers(config: RunConfig, folder: Path, file: str, records: list[Record], model: Parts, data: Parts,
            load: LoadLM, rule: CacheRule, description: str) -> dict[str, dict]:
    """The model's greedy answers to every record's prompt, resumable in `folder/file` under the parts of the
    evaluated model, the prompts, the records and the answer length. Prompts the engine could not answer stop
    the evaluation (a missing answer can't be scored); rerunning asks for exactly those."""
    settings = config.evaluate
    out = RecordFile(folder / file, {**model, "prompt": prompt_part(config.model.max_context), **data,
                                     "evaluate.max_new_tokens": settings.max_new_tokens}, rule)
    if len(out) < len(records):
        suite = file.removesuffix("predictions.jsonl").rstrip(".")
        prompts = task_prompts(config, settings.engine, f"eval/{folder.name}" + (f"/{suite}" if suite else ""),
                               records, reserve=settings.max_new_tokens)
        failures = generate_into(load(), prompts, out, settings.max_new_tokens, f"{description} ({settings.engine})")
        if failures:
            raise GenerationFailed(f"{out.path}: {len(failures)} of {len(records)} answers failed (first: "
                                   f"{next(iter(failures.values()))}); the others are kept, and rerunning asks "
                                   "again for these")
    return out.records


class Judges(contextlib.ExitStack):
    """The judges of one evaluation, each built once however many suites it decides (an llm judge loads its model
    on first use), and closed together at the end."""

    def __init__(self):
        super().__init__()
        self.built: dict[str, Judge] = {}

    def __call__(self, spec: JudgeConfig) -> Judge:
        key = judge_fingerprint(spec)
        if key not in self.built:
            self.built[key] = self.enter_context(build_judge(spec))
        return self.built[key]


def suite_file(suite: str) -> str:
    """Where a judged suite's answers are: predictions.jsonl for the task, <suite>.predictions.jsonl otherwise."""
    return "predictions.jsonl" if suite == "task" else f"{suite}.predictions.jsonl"


def judged_suite(folder: Path, suite: str, records: list[Record], predictions: dict[str, dict], rule: CacheRule,
                 judges: Judges, judge: tuple[JudgeConfig, str]) -> dict:
    """The model's answers to a task's records (the held-out split, the out-of-domain set, a user's set), each
    judged against the gold answers: accuracy is the share the judge accepts, with its Wilson interval; the
    grounded-QA metrics are added where the data has unanswerable examples. `judge`: its settings and their key
    in the configuration."""
    texts = {r.id: predictions[r.id]["response"] for r in records}
    items = [JudgeInput.of(r, texts[r.id]) for r in records]
    verdicts = judged(judges, judge, items, folder / f"{suite}.judgments.jsonl", folder / suite_file(suite), rule)
    grounded = has_unanswerable(records)
    rows = judged_rows(records, texts, verdicts, grounded)
    metrics = {**task_metrics(rows, grounded), "judge": describe(judge[0])}
    if suite == "task":  # the in-domain suite keeps its layout: task.json + scores.jsonl
        write_jsonl(folder / "scores.jsonl", rows)
        write_json(folder / "task.json", metrics)
    else:
        write_json(folder / f"{suite}.json", {**metrics, "examples": rows})
    return metrics


def judged(judges: Judges, judge: tuple[JudgeConfig, str], items: list[JudgeInput], path: Path, answers: Path,
           rule: CacheRule) -> dict[str, dict]:
    """The verdicts on a suite's answers, cached in `path` like the training judge's (an llm judge's verdicts are
    costly): resumed batch by batch, and judged again when the judge or the answers changed (evaluation is the end
    of the chain, so nothing downstream is lost by redoing them, as retention benchmarks are redone)."""
    spec, key = judge
    inputs = {"judge": judge_part(spec, key), answers.name: Digest(recorded_fingerprint(answers))}
    return judge_all(judges(spec), items, RecordFile(path, inputs, rule, on_change="redo"))


def retention_suite(config: RunConfig, folder: Path, model_fp: str, load: LoadLM, fresh: bool) -> dict:
    """Benchmarks on a seeded sample of each (the same documents for every model), and the KL from the base model.

    Written after each benchmark, so an interrupted evaluation resumes with the next one.
    """
    settings = config.evaluate.retention
    path = folder / "retention.json"
    result = read_json(path) if path.exists() and not fresh else {}
    # benchmarks dropped from the configuration leave the report
    result["benchmarks"] = {k: v for k, v in result.get("benchmarks", {}).items() if k in settings.benchmarks}
    batch = settings.batch_size
    if settings.harness == "lm-eval":
        wanted = fingerprint(model_fp, settings.model_dump(mode="json"))
        if result.get("fingerprint") != wanted:
            raw = harness_results(load(), settings.benchmarks, settings.limit, batch)
            result = {"fingerprint": wanted, "harness": "lm-eval", "benchmarks": from_lm_eval(raw)}
            write_json(path, result)
        return result
    for name in settings.benchmarks:
        spec = bench.BENCHMARKS[name]
        generation = (settings.gsm8k_shots, settings.gsm8k_max_new_tokens) if spec.generative else ()
        wanted = fingerprint(model_fp, name, settings.limit, settings.seed, *generation)
        if result["benchmarks"].get(name, {}).get("fingerprint") == wanted:
            continue
        items = bench.stratified_sample(spec.load(), settings.limit, settings.seed)
        start = time.perf_counter()
        if spec.generative:
            rows = retention.gsm8k(load(), items, settings.gsm8k_shots, settings.gsm8k_max_new_tokens, batch)
        else:
            rows = retention.multiple_choice(load(), items, batch, name)
        result["benchmarks"][name] = {"fingerprint": wanted, "n": len(rows), "split": spec.split,
                                      "primary": spec.primary, "seconds": round(time.perf_counter() - start, 1),
                                      **retention.summarise(rows, spec.metrics), "examples": rows}
        write_json(path, result)
    if settings.kl_prompts:
        result["kl"] = kl_suite(config, folder, model_fp, load, result.get("kl"))
    else:
        result.pop("kl", None)
    write_json(path, result)
    return result


def kl_suite(config: RunConfig, folder: Path, model_fp: str, load: LoadLM, previous: dict | None) -> dict:
    """The base model writes the reference (its responses and next-token distributions); every other model is
    measured against it."""
    settings = config.evaluate.retention
    prompts = general_prompts(config)
    layout = RunLayout(config.path)
    reference_path = layout.kl_reference
    if folder == layout.evaluation(BASE):
        reference_fp = fingerprint(model_fp, prompts, settings.kl_max_new_tokens, settings.kl_top_k)
        if not (reference_path.exists() and previous and previous.get("reference") == reference_fp):
            save_file(retention.kl_reference(load(), prompts, settings.kl_max_new_tokens, settings.kl_top_k,
                                             settings.batch_size), reference_path)
        return {"reference": reference_fp, "mean_kl": 0.0, "n_prompts": len(prompts)}
    if not reference_path.exists():
        raise FileNotFoundError(f"{reference_path}: evaluate the base model first (its responses are the reference)")
    base = read_json(layout.evaluation(BASE) / "retention.json").get("kl", {})
    wanted = fingerprint(model_fp, base.get("reference"))
    if previous and previous.get("fingerprint") == wanted:
        return previous
    kl = retention.kl_from_reference(load(), load_file(reference_path), settings.batch_size)
    return {"fingerprint": wanted, **kl}


def general_prompts(config: RunConfig) -> list[str]:
    settings = config.evaluate.retention
    if settings.kl_prompts_file:
        lines = Path(settings.kl_prompts_file).read_text(encoding="utf-8").splitlines()
        prompts = [line.strip() for line in lines if line.strip()]
    else:
        prompts = retention.GENERAL_PROMPTS
    return prompts[: settings.kl_prompts]


LM_EVAL_METRICS = {"acc,none": "acc", "acc_norm,none": "acc_norm", "exact_match,flexible-extract": "exact_match"}


def from_lm_eval(results: dict[str, dict]) -> dict[str, dict]:
    """The harness's result dict in our layout (no per-example rows: the harness keeps them)."""
    out = {}
    for task, values in results.items():
        metrics = {}
        for key, ours in LM_EVAL_METRICS.items():
            if key in values:
                se = values.get(key.replace(",", "_stderr,", 1), 0.0)
                metrics[ours] = {"value": values[key], "stderr": se,
                                 "ci95": [values[key] - Z95 * se, values[key] + Z95 * se]}
        if metrics:
            known = bench.BENCHMARKS.get(task)
            primary = known.primary if known and known.primary in metrics else next(iter(metrics))
            out[task] = {"split": "lm-eval", "primary": primary, **metrics}
    return out
