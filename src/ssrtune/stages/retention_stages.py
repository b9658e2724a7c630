"""Retention of general ability in a model's evaluation: one stage per benchmark (a seeded sample of each, the
same documents for every model), the base model's KL reference and each trained model's KL from it, or the
lm-evaluation-harness's run of them all; and retention.json, written from them for the report."""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from safetensors.torch import load_file, save_file

from ssrtune.config.run import RunConfig
from ssrtune.evaluation import benchmarks as bench
from ssrtune.evaluation import ifeval, retention
from ssrtune.evaluation.stats import Z95
from ssrtune.inference.harness import harness_results
from ssrtune.stages.base import Inputs, Stage
from ssrtune.stages.evaluated import EvaluationStage
from ssrtune.storage.artifacts import read_json, write_json
from ssrtune.storage.fingerprints import Digest, Parts, parts_hash
from ssrtune.storage.layout import RunLayout


@dataclass(frozen=True, eq=False)
class RetentionPart(EvaluationStage):
    """A result of retention, recomputed when its inputs changed (nothing depends on it but the report), written
    as JSON under eval/<model>/retention/ with the hash of its parts under `fingerprint`, as retention.json
    records it."""

    kind, on_change = "whole", "redo"

    @property
    @abstractmethod
    def result(self) -> str:
        """The result's name: a benchmark's, `lm-eval`, `kl`."""

    @property
    def part(self) -> str:
        return f"retention/{self.result}"

    def artifact(self, layout: RunLayout) -> Path:
        return layout.retention_part(self.subject, self.result)

    def load(self, inputs: Inputs) -> dict:
        return read_json(self.artifact(inputs.layout))

    def written(self, inputs: Inputs, result: dict) -> dict:
        result = {"fingerprint": parts_hash(self.parts(inputs)), **result}
        write_json(self.artifact(inputs.layout), result)
        return result


@dataclass(frozen=True, eq=False)
class Benchmark(RetentionPart):
    """One benchmark. Inputs: the evaluated model, the sample (`limit`, `seed`) and, for GSM8K, the shots and the
    answer length; for IFEval, the answer length, the prompts' file and the scorer's versions. Artifact:
    eval/<model>/retention/<benchmark>.json, with per-document `examples` (IFEval's keep the answers)."""

    benchmark: str = field(kw_only=True)  # after `model`, which has a default

    @property
    def result(self) -> str:
        return self.benchmark

    def parts(self, inputs: Inputs) -> Parts:
        settings = inputs.config.evaluate.retention
        return {**self.evaluated_model(inputs), "benchmark": self.benchmark,
                "evaluate.retention.limit": settings.limit_of(self.benchmark), "evaluate.retention.seed": settings.seed,
                **self.generation(settings)}

    def generation(self, settings) -> Parts:
        """What else decides a generative benchmark's result: its settings and, for IFEval, the prompts' file and
        the versions of the packages that score the answers."""
        if self.benchmark == "gsm8k":
            return {"evaluate.retention.gsm8k_shots": settings.gsm8k_shots,
                    "evaluate.retention.gsm8k_max_new_tokens": settings.gsm8k_max_new_tokens}
        if self.benchmark == "ifeval":
            return {"evaluate.retention.ifeval_max_new_tokens": settings.ifeval_max_new_tokens,
                    "ifeval prompts (sha256)": ifeval.data_hash(), "ifeval scorer": ifeval.scorer_versions()}
        return {}

    def make(self, inputs: Inputs) -> dict:
        settings, spec = inputs.config.evaluate.retention, bench.BENCHMARKS[self.benchmark]
        items = bench.stratified_sample(spec.load(), settings.limit_of(self.benchmark), settings.seed)
        start = time.perf_counter()
        if self.benchmark == "ifeval":
            rows = ifeval.ifeval(self.lm(inputs), items, settings.ifeval_max_new_tokens, settings.batch_size)
            scores = ifeval.summarise(rows)
        elif spec.generative:
            rows = retention.gsm8k(self.lm(inputs), items, settings.gsm8k_shots, settings.gsm8k_max_new_tokens,
                                   settings.batch_size)
            scores = retention.summarise(rows, spec.metrics)
        else:
            rows = retention.multiple_choice(self.lm(inputs), items, settings.batch_size, self.benchmark)
            scores = retention.summarise(rows, spec.metrics)
        return self.written(inputs, {"n": len(rows), "split": spec.split, "primary": spec.primary,
                                     "seconds": round(time.perf_counter() - start, 1), **scores, "examples": rows})

    def describe(self, result: dict) -> str:
        return f"{result['primary']} {result[result['primary']]['value']:.3f}"


@dataclass(frozen=True, eq=False)
class Harness(RetentionPart):
    """Every benchmark through lm-evaluation-harness (`retention.harness: lm-eval`). Inputs: the evaluated model
    and the retention settings. Artifact: eval/<model>/retention/lm-eval.json (no per-document rows: the harness
    keeps them)."""

    @property
    def result(self) -> str:
        return "lm-eval"

    def parts(self, inputs: Inputs) -> Parts:
        return {**self.evaluated_model(inputs),
                "evaluate.retention": inputs.config.evaluate.retention.model_dump(mode="json")}

    def make(self, inputs: Inputs) -> dict:
        settings = inputs.config.evaluate.retention
        raw = harness_results(self.lm(inputs), settings.benchmarks, settings.limit, settings.batch_size)
        return self.written(inputs, {"harness": "lm-eval", "benchmarks": from_lm_eval(raw)})


@dataclass(frozen=True, eq=False)
class KlReference(EvaluationStage):
    """The base model's responses to the general prompts and its next-token distributions, which every trained
    model's KL is measured against. Inputs: the base model, the prompts, `kl_max_new_tokens`, `kl_top_k`.
    Artifact: eval/base/kl_reference.safetensors; remade when they changed. Result: retention.json's `kl` of the
    base model (its hash as `reference`)."""

    kind, on_change = "whole", "redo"

    @property
    def part(self) -> str:
        return "retention/kl_reference"

    def artifact(self, layout: RunLayout) -> Path:
        return layout.kl_reference

    def parts(self, inputs: Inputs) -> Parts:
        settings = inputs.config.evaluate.retention
        return {**self.evaluated_model(inputs), "the KL prompts": general_prompts(inputs.config),
                "evaluate.retention.kl_max_new_tokens": settings.kl_max_new_tokens,
                "evaluate.retention.kl_top_k": settings.kl_top_k}

    def load(self, inputs: Inputs) -> dict:
        return {"reference": parts_hash(self.parts(inputs)), "mean_kl": 0.0,
                "n_prompts": len(general_prompts(inputs.config))}

    def make(self, inputs: Inputs) -> dict:
        settings, path = inputs.config.evaluate.retention, self.artifact(inputs.layout)
        path.parent.mkdir(parents=True, exist_ok=True)  # made first when a trained model's evaluation needs it
        save_file(retention.kl_reference(self.lm(inputs), general_prompts(inputs.config), settings.kl_max_new_tokens,
                                         settings.kl_top_k, settings.batch_size), path)
        return self.load(inputs)

    def describe(self, result: dict) -> str:
        return f"{result['n_prompts']} reference responses"


@dataclass(frozen=True, eq=False)
class Kl(RetentionPart):
    """A trained model's KL from the base model on the base model's responses. Inputs: the evaluated model and the
    reference. Artifact: eval/<model>/retention/kl.json."""

    @property
    def result(self) -> str:
        return "kl"

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        return {**super().needs(config), "reference": KlReference()}

    def parts(self, inputs: Inputs) -> Parts:
        return {**self.evaluated_model(inputs), "eval/base/kl_reference.safetensors": Digest(
            inputs["reference"]["reference"])}

    def make(self, inputs: Inputs) -> dict:
        reference = load_file(inputs.layout.kl_reference)
        return self.written(inputs, retention.kl_from_reference(self.lm(inputs), reference,
                                                                inputs.config.evaluate.retention.batch_size))

    def describe(self, result: dict) -> str:
        return f"KL from base {result['mean_kl']:.4f}"


@dataclass(frozen=True, eq=False)
class Retention(EvaluationStage):
    """The model's retention.json, remade every time from its benchmarks' and KL stages (benchmarks dropped from
    the configuration leave it): `benchmarks` by name and `kl`, or the harness's result."""

    @property
    def part(self) -> str:
        return "retention"

    def needs(self, config: RunConfig) -> dict[str, Stage]:
        settings = config.evaluate.retention
        if settings.harness == "lm-eval":
            return {"lm-eval": Harness(self.model)}
        kl = {"kl": KlReference() if self.model is None else Kl(self.model)} if settings.kl_prompts else {}
        return {**{name: Benchmark(self.model, benchmark=name) for name in settings.benchmarks}, **kl}

    def artifact(self, layout: RunLayout) -> Path:
        return layout.retention(self.subject)

    def make(self, inputs: Inputs) -> dict:
        settings = inputs.config.evaluate.retention
        result = inputs["lm-eval"] if settings.harness == "lm-eval" else {
            "benchmarks": {name: inputs[name] for name in settings.benchmarks},
            **({"kl": inputs["kl"]} if settings.kl_prompts else {})}
        write_json(self.artifact(inputs.layout), result)
        return result

    def describe(self, result: dict) -> str:
        """`hellaswag acc_norm 0.412, KL from base 0.0123`."""
        scores = [f"{name} {r['primary']} {r[r['primary']]['value']:.3f}" for name, r in result["benchmarks"].items()]
        kl = result.get("kl", {}).get("mean_kl")
        return ", ".join(scores + ([f"KL from base {kl:.4f}"] if kl is not None else []))


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
    """The harness's result dict in our layout (no per-document rows: the harness keeps them)."""
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
